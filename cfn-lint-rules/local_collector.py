"""A cfn-lint rule of this repository (`.cfnlintrc.yaml` adds it to every run of `cfn-lint`).

A function whose tracer exports OTLP to its own environment (`localhost`, `127.0.0.1`, `[::1]`,
`0.0.0.0`; the tracer's default endpoint when none is set) needs a collector there: a layer that
runs one as an extension. Without it every export is refused and no span leaves the function. So
a function's tracer may be on only when such a layer is attached: always, or under the same
condition. `cfn-lint-rules/check` runs the rule on the templates of `cfn-lint-rules/cases`.

The variables are read as the tracer reads them (`powertools-tracing/src/tracer.rs`): an empty
value is unset, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins over `OTEL_EXPORTER_OTLP_ENDPOINT`,
booleans in every form `Env::bool` takes, `POWERTOOLS_DEV` turning the tracer off unless
`POWERTOOLS_TRACE_DISABLED` says otherwise. cfn-lint merges SAM's Globals into each serverless
function before rules run (honouring `IgnoreGlobals`), so a function's properties are read as
they are.
"""

from __future__ import annotations

import ipaddress
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

# When something holds: always, never, or when a condition is true / false.
ALWAYS = ("always",)
NEVER = ("never",)


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


def _branches(cfn, value, read):
    """`value` read by `read`: ("const", v) or ("if", condition, v_true, v_false)."""
    if isinstance(value, dict) and list(value) == ["Fn::If"] and len(value["Fn::If"]) == 3:
        condition, when_true, when_false = value["Fn::If"]
        return ("if", condition, read(cfn, when_true), read(cfn, when_false))
    return ("const", read(cfn, value))


def _when(values, holds):
    """When `holds(*resolved)` is true, for values that are constants or depend on one
    condition; ALWAYS when they depend on several (the strict answer)."""
    conditions = {value[1] for value in values if value[0] == "if"}
    if len(conditions) > 1:
        return ALWAYS

    def under(truth):
        return holds(
            *[
                value[1] if value[0] == "const" else (value[2] if truth else value[3])
                for value in values
            ]
        )

    if not conditions:
        return ALWAYS if under(True) else NEVER
    condition = conditions.pop()
    on_true, on_false = under(True), under(False)
    if on_true and on_false:
        return ALWAYS
    if on_true:
        return ("if", condition, True)
    if on_false:
        return ("if", condition, False)
    return NEVER


def _is_collector(cfn, layer) -> bool:
    """Whether a layer entry names a collector: its ARN, or a parameter named for one."""
    if isinstance(layer, dict) and list(layer) == ["Ref"]:
        if "collector" in str(layer["Ref"]).lower():
            return True
    arn = _resolved(cfn, layer)
    return isinstance(arn, str) and "collector" in arn.lower()


def _collector_attached(cfn, layers):
    """When `layers` (a list, whose entries may be `Fn::If`, or an `Fn::If` of lists) attaches
    a collector."""

    def in_list(_cfn, entries):
        return isinstance(entries, list) and any(_is_collector(cfn, entry) for entry in entries)

    if layers is None or layers == NO_VALUE:
        return NEVER
    if isinstance(layers, dict):
        return _when([_branches(cfn, layers, in_list)], bool)
    if not isinstance(layers, list):
        return NEVER
    found = []
    for entry in layers:
        when = _when([_branches(cfn, entry, lambda _cfn, e: _is_collector(cfn, e))], bool)
        if when == ALWAYS:
            return ALWAYS
        if when != NEVER:
            found.append(when)
    if not found:
        return NEVER
    for when in found:
        if ("if", when[1], not when[2]) in found:
            return ALWAYS
    return found[0]


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
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (
        address.is_loopback
        or address.is_unspecified
        or (mapped is not None and (mapped.is_loopback or mapped.is_unspecified))
    )


def _endpoint_local(cfn, value, fallback):
    """Whether an endpoint variable's value exports locally; `fallback` when it is unset or
    empty (the next variable, or the tracer's default). A value that cannot be told (an import)
    is read as remote."""
    if value is None or value == NO_VALUE:
        return fallback
    text = _resolved(cfn, value)
    if text is None:
        return False
    if not text.strip():
        return fallback
    return _is_local(text)


def _exports_locally_when_on(cfn, variables):
    """When the tracer is on and exports to its own environment: the traces endpoint, else the
    general one, else the default; each may be an `Fn::If`."""
    traces = variables.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    general = variables.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    values = [
        _branches(cfn, variables.get("POWERTOOLS_TRACE_DISABLED"), _boolean),
        _branches(cfn, variables.get("POWERTOOLS_DEV"), _boolean),
        # None: unset, the general variable decides.
        _branches(cfn, traces, lambda c, v: _endpoint_local(c, v, None)),
        _branches(
            cfn, general, lambda c, v: _endpoint_local(c, v, _is_local(DEFAULT_ENDPOINT))
        ),
    ]

    def holds(disabled, dev, traces_local, general_local):
        if disabled is BAD:
            on = False
        elif disabled is UNKNOWN:
            on = True
        elif disabled is not None:
            on = not disabled
        else:
            on = dev is not True
        local = general_local if traces_local is None else traces_local
        return on and bool(local)

    return _when(values, holds)


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
                    needed = self._needs_collector(cfn, resource)
                except Exception:  # noqa: BLE001
                    # A template this rule cannot read (a list where a map belongs, …): other
                    # rules report what is wrong with it; a crash here would report nothing.
                    continue
                if needed is None:
                    continue
                matches.append(
                    RuleMatch(
                        ["Resources", name, "Properties"],
                        f"{name} exports spans to its own environment ({needed}) with its "
                        "tracer on, but no collector layer runs there whenever it is on: the "
                        "spans go nowhere. Attach one (Layers: its ARN, or a parameter named "
                        "for it), or turn the tracer off (POWERTOOLS_TRACE_DISABLED) under the "
                        "condition that leaves it out.",
                    )
                )
        return matches

    @staticmethod
    def _needs_collector(cfn, resource):
        """The endpoint a function exports to locally without a collector, or None."""
        properties = resource.get("Properties") or {}
        variables = ((properties.get("Environment") or {}).get("Variables")) or {}
        if not isinstance(variables, dict):
            return None
        need = _exports_locally_when_on(cfn, variables)
        attached = _collector_attached(cfn, properties.get("Layers"))
        if need == NEVER or attached == ALWAYS or need == attached:
            return None
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            written = _resolved(cfn, variables.get(variable))
            if written and written.strip():
                return written
        return DEFAULT_ENDPOINT
