"""A cfn-lint rule of this repository (`.cfnlintrc.yaml` adds it to every run of `cfn-lint`).

A function whose tracer exports OTLP to its own environment (`localhost`, `127.0.0.1`, `[::1]`;
the tracer's default endpoint when none is set) needs a collector there: a layer that runs one
as an extension. Without it every export is refused and no span leaves the function. So a
function's tracer may be on only when such a layer is attached: always, or under the same
condition. `cfn-lint-rules/check` runs the rule on the templates of `cfn-lint-rules/cases`.
"""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

LOCAL_HOSTS = ("localhost", "127.", "[::1]")
NO_VALUE = {"Ref": "AWS::NoValue"}
# The forms of a boolean the tracer reads (`Env::bool`), trimmed, any case.
TRUE = {"true", "1", "yes", "y", "on", "t"}
FALSE = {"false", "0", "no", "n", "off", "f"}
# The tracer's endpoint when no variable names one (`DEFAULT_TRACES_ENDPOINT`).
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"

# When something holds: always, never, or when a condition is true / false.
ALWAYS = ("always",)
NEVER = ("never",)


def _boolean(value):
    """True, False, or None for a value that is not one of the tracer's booleans."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
    return None


def _resolved(cfn, value):
    """A string value as deployed with the parameters' defaults (`Ref`, `Fn::Sub` of
    parameters), or None when it cannot be told."""
    parameters = cfn.template.get("Parameters", {}) or {}

    def default(name):
        parameter = parameters.get(name)
        if isinstance(parameter, dict) and "Default" in parameter:
            return str(parameter["Default"])
        return None

    if isinstance(value, str):
        return value
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return default(value["Ref"])
    if isinstance(value, dict) and list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        while "${" in text:
            start = text.index("${")
            end = text.find("}", start)
            if end < 0:
                return None
            name = text[start + 2 : end]
            # A pseudo parameter (`${AWS::Region}`) stands for itself: its value is not needed.
            replacement = name if name.startswith("AWS::") else default(name)
            if replacement is None:
                return None
            text = text[:start] + replacement + text[end + 1 :]
        return text
    return None


def _is_local(endpoint) -> bool:
    if not isinstance(endpoint, str):
        return False
    rest = endpoint.strip().lower().split("://", 1)[-1]
    return rest.startswith(LOCAL_HOSTS)


def _tracer_on(variables):
    """When the tracer is on, from `POWERTOOLS_TRACE_DISABLED` and `POWERTOOLS_DEV` (on by
    default; `POWERTOOLS_DEV` turns it off unless `POWERTOOLS_TRACE_DISABLED` says false)."""
    disabled = variables.get("POWERTOOLS_TRACE_DISABLED")
    if disabled is None:
        return NEVER if _boolean(variables.get("POWERTOOLS_DEV")) is True else ALWAYS
    value = _boolean(disabled)
    if value is not None:
        return NEVER if value else ALWAYS
    if isinstance(disabled, dict) and list(disabled) == ["Fn::If"]:
        condition, when_true, when_false = disabled["Fn::If"]
        on_if_true, on_if_false = _boolean(when_true) is False, _boolean(when_false) is False
        if on_if_true and on_if_false:
            return ALWAYS
        if on_if_true:
            return ("if", condition, True)
        if on_if_false:
            return ("if", condition, False)
        return NEVER
    # Anything else: the tracer refuses it at start; not this rule's to judge.
    return NEVER


def _is_collector(cfn, layer) -> bool:
    """Whether a layer entry names a collector: its ARN, or a parameter named for one."""
    if isinstance(layer, dict) and list(layer) == ["Ref"]:
        if "collector" in layer["Ref"].lower():
            return True
    arn = _resolved(cfn, layer)
    return isinstance(arn, str) and "collector" in arn.lower()


def _collector_attached(cfn, layers):
    """When `layers` attaches a collector."""
    if isinstance(layers, list):
        return ALWAYS if any(_is_collector(cfn, layer) for layer in layers) else NEVER
    if isinstance(layers, dict) and list(layers) == ["Fn::If"]:
        condition, when_true, when_false = layers["Fn::If"]
        with_true = isinstance(when_true, list) and any(_is_collector(cfn, l) for l in when_true)
        with_false = isinstance(when_false, list) and any(
            _is_collector(cfn, l) for l in when_false
        )
        if with_true and with_false:
            return ALWAYS
        if with_true:
            return ("if", condition, True)
        if with_false:
            return ("if", condition, False)
    return NEVER


def _merged(common, properties):
    """A serverless function's variables and layers as SAM merges its Globals into it:
    variables by name (the function's win); layer lists joined, the global ones first, unless
    either is an intrinsic function, which SAM cannot merge (the function's is kept)."""
    variables = dict(((common.get("Environment") or {}).get("Variables")) or {})
    variables.update(((properties.get("Environment") or {}).get("Variables")) or {})
    own, shared = properties.get("Layers"), common.get("Layers")
    if own is None:
        layers = shared
    elif isinstance(own, list) and isinstance(shared, list):
        layers = shared + own
    else:
        layers = own
    return variables, layers


class LocalCollector(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "A function that exports spans to its own environment has a collector there"
    description = (
        "A tracer exporting OTLP to localhost (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
        "OTEL_EXPORTER_OTLP_ENDPOINT, or neither) needs a collector layer whenever it is on "
        "(POWERTOOLS_TRACE_DISABLED, POWERTOOLS_DEV)"
    )
    source_url = "https://aws-otel.github.io/docs/getting-started/lambda"
    tags = ["resources", "lambda", "powertools-rs"]

    def match(self, cfn):
        matches = []
        # Rules read the template before SAM's transform: a serverless function takes what the
        # template's Globals give every serverless function; a plain one takes nothing.
        common = ((cfn.template.get("Globals") or {}).get("Function")) or {}
        for kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            for name, resource in cfn.get_resources(kind).items():
                properties = resource.get("Properties") or {}
                if kind == "AWS::Serverless::Function":
                    variables, layers = _merged(common, properties)
                else:
                    variables = ((properties.get("Environment") or {}).get("Variables")) or {}
                    layers = properties.get("Layers")
                written = variables.get(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    variables.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT),
                )
                endpoint = _resolved(cfn, written)
                if not _is_local(endpoint):
                    continue
                on = _tracer_on(variables)
                attached = _collector_attached(cfn, layers)
                if on == NEVER or attached == ALWAYS or on == attached:
                    continue
                matches.append(
                    RuleMatch(
                        ["Resources", name, "Properties"],
                        f"{name} exports spans to {endpoint} with its tracer on, but no "
                        "collector layer runs there whenever it is on: the spans go nowhere. "
                        "Attach one (Layers: its ARN, or a parameter named for it), or turn the "
                        "tracer off (POWERTOOLS_TRACE_DISABLED) under the condition that leaves "
                        "it out.",
                    )
                )
        return matches
