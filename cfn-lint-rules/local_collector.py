"""A cfn-lint rule of this repository (`.cfnlintrc.yaml` adds it to every run of `cfn-lint`).

A function whose tracer exports OTLP to its own environment (`localhost`, `127.0.0.1`, `[::1]`,
`0.0.0.0`; the tracer's default endpoint when none is set) needs a collector there: a layer that
runs one as an extension. Without it every export is refused and no span leaves the function. So
a function's tracer may export there only when such a layer is attached: the rule checks every
combination of the conditions its variables and layers name (each taken as independent of the
others), and says which one leaves the spans nowhere. A function it cannot read (a list where a
map belongs) is a finding too, not an exception that would hide one. `cfn-lint-rules/check`
runs the rule on the templates of `cfn-lint-rules/cases`.

The variables are read as the tracer reads them (`powertools-tracing/src/tracer.rs`): an empty
value is unset, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins over `OTEL_EXPORTER_OTLP_ENDPOINT`,
booleans in every form `Env::bool` takes, `POWERTOOLS_DEV` turning the tracer off unless
`POWERTOOLS_TRACE_DISABLED` says otherwise. cfn-lint merges SAM's Globals into each serverless
function before rules run (honouring `IgnoreGlobals`), so a function's properties are read as
they are.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from urllib.parse import urlsplit

from cfnlint.rules import CloudFormationLintRule, RuleMatch

NO_VALUE = {"Ref": "AWS::NoValue"}
TRUE = {"true", "1", "yes", "y", "on", "t"}
FALSE = {"false", "0", "no", "n", "off", "f"}
# The tracer's endpoint when no variable names one (`DEFAULT_TRACES_ENDPOINT`).
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
# Not a boolean the tracer reads: it refuses to start, which is not this rule's to judge.
BAD = "bad"
# A value the template decides when deployed (a parameter without a default, an import): the
# tracer may be on.
UNKNOWN = "unknown"



def _parameter_default(cfn, name):
    parameter = (cfn.template.get("Parameters") or {}).get(name)
    if isinstance(parameter, dict) and "Default" in parameter:
        return str(parameter["Default"])
    return None


def _resolved(cfn, value):
    """A string value as deployed with the parameters' defaults (`Ref`, both forms of
    `Fn::Sub`), or None when it cannot be told or is unset (`AWS::NoValue`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    if "Ref" in value:
        if value["Ref"] == "AWS::NoValue":
            return None
        return _parameter_default(cfn, value["Ref"])
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        variables = {}
        if isinstance(sub, list) and len(sub) == 2 and isinstance(sub[1], dict):
            sub, given = sub
            for name, given_value in given.items():
                variables[name] = _resolved(cfn, given_value)
        if not isinstance(sub, str):
            return None
        # One pass, as CloudFormation substitutes: a value holding `${…}` is not read again
        # (a loop that read it again never ended; found by a review).
        parts, rest = [], sub
        while "${" in rest:
            start = rest.index("${")
            end = rest.find("}", start)
            if end < 0:
                return None
            name = rest[start + 2 : end]
            if name in variables:
                replacement = variables[name]
            elif name.startswith("AWS::"):
                # A pseudo parameter stands for itself: its value is not needed.
                replacement = name
            else:
                replacement = _parameter_default(cfn, name)
            if replacement is None:
                return None
            parts.append(rest[:start])
            parts.append(replacement)
            rest = rest[end + 1 :]
        parts.append(rest)
        return "".join(parts)
    if "Fn::Join" in value:
        joined = value["Fn::Join"]
        if not isinstance(joined, list) or len(joined) != 2 or not isinstance(joined[1], list):
            return None
        parts = [_resolved(cfn, part) for part in joined[1]]
        if not isinstance(joined[0], str) or any(part is None for part in parts):
            return None
        return joined[0].join(parts)
    if "Fn::FindInMap" in value:
        keys = value["Fn::FindInMap"]
        if not isinstance(keys, list) or len(keys) < 3:
            return None
        names = [_resolved(cfn, key) for key in keys[:3]]
        if any(not isinstance(name, str) for name in names):
            return None
        found = ((cfn.template.get("Mappings") or {}).get(names[0]) or {})
        found = (found.get(names[1]) or {}) if isinstance(found, dict) else {}
        found = found.get(names[2]) if isinstance(found, dict) else None
        return _resolved(cfn, found) if isinstance(found, (str, bool, int, float)) else None
    return None


def _boolean(cfn, value):
    """A variable as the tracer's `Env::bool` reads it: True, False, None (unset or empty), or
    BAD."""
    if value is None or value == NO_VALUE:
        return None
    text = _resolved(cfn, value)
    if text is None:
        return UNKNOWN
    if text == "":
        return None
    # The tracer trims a value, but refuses one of spaces alone.
    text = text.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    return BAD


def _conditions(value, found):
    """The conditions of every `Fn::If` in `value`, nested ones too."""
    if isinstance(value, dict):
        if list(value) == ["Fn::If"] and isinstance(value["Fn::If"], list):
            if len(value["Fn::If"]) == 3 and isinstance(value["Fn::If"][0], str):
                found.add(value["Fn::If"][0])
        for inner in value.values():
            _conditions(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _conditions(inner, found)
    return found


def _chosen(value, assignment):
    """`value` with every `Fn::If` replaced by its branch under `assignment` (condition name to
    truth), at any depth."""
    if isinstance(value, dict):
        if list(value) == ["Fn::If"] and isinstance(value["Fn::If"], list) and len(
            value["Fn::If"]
        ) == 3:
            condition, when_true, when_false = value["Fn::If"]
            return _chosen(when_true if assignment.get(condition) else when_false, assignment)
        return {key: _chosen(inner, assignment) for key, inner in value.items()}
    if isinstance(value, list):
        # A list entry that is `AWS::NoValue` is left out, as CloudFormation leaves it out.
        return [
            chosen
            for chosen in (_chosen(inner, assignment) for inner in value)
            if chosen != NO_VALUE
        ]
    return value


def _is_collector(cfn, layer) -> bool:
    """Whether a layer entry names a collector: its ARN, or a parameter named for one."""
    if isinstance(layer, dict) and list(layer) == ["Ref"]:
        if "collector" in str(layer["Ref"]).lower():
            return True
    arn = _resolved(cfn, layer)
    return isinstance(arn, str) and "collector" in arn.lower()


def _is_local(endpoint) -> bool:
    """Whether `endpoint` names the function's own environment: `localhost`, a loopback or
    unspecified address in any of its forms (`127.0.0.1`, `[::1]`, `[0:0:0:0:0:0:0:1]`,
    `[::ffff:127.0.0.1]`, `0.0.0.0`)."""
    if not isinstance(endpoint, str):
        return False
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # The short IPv4 forms a resolver takes (`127.1`, `0`, `2130706433`).
        try:
            address = ipaddress.ip_address(socket.inet_aton(host))
        except (OSError, ValueError):
            return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (
        address.is_loopback
        or address.is_unspecified
        or (mapped is not None and (mapped.is_loopback or mapped.is_unspecified))
    )


def _exports_locally(cfn, variables):
    """Whether the tracer, with these variables (every `Fn::If` already chosen), is on and
    exports to its own environment: the traces endpoint, else the general one, else the
    default. A value the tracer refuses at start (whitespace alone, not a boolean) is not this
    rule's to judge: no finding."""
    disabled = _boolean(cfn, variables.get("POWERTOOLS_TRACE_DISABLED"))
    dev = _boolean(cfn, variables.get("POWERTOOLS_DEV"))
    if disabled is BAD or (disabled is None and dev is BAD):
        return None
    if disabled is None:
        on = dev is not True
    else:
        on = disabled is UNKNOWN or not disabled
    if not on:
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = variables.get(name)
        if value is None or value == NO_VALUE:
            continue
        text = _resolved(cfn, value)
        if text is None:
            # Decided at deploy (an import): read as remote.
            return None
        if text == "":
            continue
        if not text.strip():
            return None
        return text if _is_local(text) else None
    return DEFAULT_ENDPOINT


def _attaches_collector(cfn, layers) -> bool:
    """Whether `layers` (every `Fn::If` already chosen) attaches a collector."""
    if not isinstance(layers, list):
        return False
    return any(_is_collector(cfn, layer) for layer in layers)


# The most conditions whose every combination is checked (2^8 = 256 combinations).
MAX_CONDITIONS = 8


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
        for kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            for name, resource in cfn.get_resources(kind).items():
                try:
                    finding = self._finding(cfn, resource)
                except Exception as error:  # noqa: BLE001
                    # Said, not skipped: a crash would otherwise hide a function that needs a
                    # collector (other rules say what is wrong with such a template).
                    finding = f"its environment and layers could not be read ({error!r})"
                if finding is None:
                    continue
                matches.append(RuleMatch(["Resources", name, "Properties"], f"{name} {finding}"))
        return matches

    @staticmethod
    def _finding(cfn, resource):
        """Why a function needs a collector it does not have, or None. Every combination of the
        conditions its variables and layers name is checked, each condition taken as
        independent of the others."""
        properties = resource.get("Properties") or {}
        if not isinstance(properties, dict):
            return None
        environment = properties.get("Environment") or {}
        variables = environment.get("Variables") if isinstance(environment, dict) else None
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            return None
        layers = properties.get("Layers")
        conditions = sorted(_conditions([variables, layers], set()))[:MAX_CONDITIONS]
        for truths in itertools.product([True, False], repeat=len(conditions)):
            assignment = dict(zip(conditions, truths))
            endpoint = _exports_locally(cfn, _chosen(variables, assignment))
            if endpoint is None or _attaches_collector(cfn, _chosen(layers, assignment)):
                continue
            when = ", ".join(
                f"{condition} {'true' if truth else 'false'}"
                for condition, truth in assignment.items()
            )
            return (
                f"exports spans to its own environment ({endpoint}) with its tracer on"
                + (f" (when {when})" if when else "")
                + ", but no collector layer runs there: the spans go nowhere. Attach one "
                "(Layers: its ARN, or a parameter named for it), or turn the tracer off "
                "(POWERTOOLS_TRACE_DISABLED) under the condition that leaves it out."
            )
        return None
