"""A cfn-lint rule of this repository (`.cfnlintrc.yaml` adds it to every run of `cfn-lint`).

A function whose tracer exports OTLP to its own environment (`localhost`, `127.0.0.1`) needs a
collector there: a layer that runs one as an extension. Without it, every export is refused and
no span leaves the function. The template's functions must attach the layer whenever their
tracer is on: a plain layer list, or the layer and the tracer under the same condition.
"""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
NO_VALUE = {"Ref": "AWS::NoValue"}


def _resolved(cfn, value):
    """A variable's value: a parameter's default for its `Ref`, else the value as written."""
    if isinstance(value, dict) and list(value) == ["Ref"]:
        parameter = cfn.template.get("Parameters", {}).get(value["Ref"])
        if isinstance(parameter, dict):
            return parameter.get("Default")
    return value


def _is_local(endpoint) -> bool:
    if not isinstance(endpoint, str):
        return False
    rest = endpoint.split("://", 1)[-1]
    return rest.startswith(LOCAL_HOSTS)


def _condition_of(layers):
    """The condition under which `layers` attaches a layer (None: always, False: never)."""
    if isinstance(layers, list):
        return None if layers else False
    if isinstance(layers, dict) and list(layers) == ["Fn::If"]:
        condition, when_true, when_false = layers["Fn::If"]
        if isinstance(when_true, list) and when_true and when_false in (NO_VALUE, []):
            return condition
    return False


class LocalCollector(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "A function that exports spans to its own environment has a collector there"
    description = (
        "OTEL_EXPORTER_OTLP_ENDPOINT on localhost needs a collector layer whenever the tracer "
        "is on (POWERTOOLS_TRACE_DISABLED)"
    )
    source_url = "https://aws-otel.github.io/docs/getting-started/lambda"
    tags = ["resources", "lambda", "powertools-rs"]

    def match(self, cfn):
        matches = []
        # Rules read the template before SAM's transform: a serverless function takes what its
        # template's Globals give every function, as SAM merges them (variables by name; the
        # function's own layers, else the global ones).
        common = ((cfn.template.get("Globals") or {}).get("Function")) or {}
        functions = {
            **cfn.get_resources("AWS::Serverless::Function"),
            **cfn.get_resources("AWS::Lambda::Function"),
        }
        for name, resource in functions.items():
            properties = resource.get("Properties") or {}
            variables = dict(((common.get("Environment") or {}).get("Variables")) or {})
            variables.update(((properties.get("Environment") or {}).get("Variables")) or {})
            layers = properties.get("Layers", common.get("Layers", []))
            if resource.get("Type") == "AWS::Lambda::Function":
                layers = properties.get("Layers", [])
            endpoint = _resolved(cfn, variables.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
            if not _is_local(endpoint):
                continue
            disabled = variables.get("POWERTOOLS_TRACE_DISABLED")
            if isinstance(disabled, str) and disabled.strip().lower() in ("true", "1"):
                continue
            condition = _condition_of(layers)
            if condition is None:
                continue
            if condition is not False and disabled == {"Fn::If": [condition, "false", "true"]}:
                continue
            matches.append(
                RuleMatch(
                    ["Resources", name, "Properties"],
                    f"{name} exports spans to {endpoint} with its tracer on, but no collector "
                    "layer runs there whenever it is on: the spans go nowhere. Attach one "
                    "(Layers), or set POWERTOOLS_TRACE_DISABLED to true under the condition "
                    "that leaves it out.",
                )
            )
        return matches
