//! JMESPath expressions over events, with the Powertools functions, compiled once and shared by
//! every utility that is configured with paths (idempotency keys, correlation ids).

pub mod envelopes;

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, Read};
use std::sync::{Arc, LazyLock};

use ::jmespath::ast::Ast;
use ::jmespath::functions::{ArgumentType, CustomFunction, Function, Signature};
use ::jmespath::{Context, ErrorReason, Expression, JmespathError, Rcvar, Runtime, Variable};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::Error;

/// The default [`JmesPath::max_decompressed_size`]: 10 MiB, the most `powertools_base64_gzip` may
/// decompress in one search.
///
/// Without a limit, a few kilobytes of gzip in an event (a "gzip bomb") inflate to gigabytes and
/// exhaust the function's memory before the handler runs. 10 MiB is above anything a legitimate
/// event carries: Lambda's largest invocation payload is 6 MB (synchronous; 1 MB asynchronous), so
/// the limit is larger than any whole event sent uncompressed, and it is ten times the 1 MiB of a
/// CloudWatch Logs `PutLogEvents` batch, the usual source of gzipped Lambda data. It is also small
/// enough that the decompressed text, and its parse by `powertools_json` (at most 500,000 values
/// in a search, counted before parsing), fit in the smallest (128 MB) function. Raise it with [`JmesPath::with_max_decompressed_size`] for payloads that
/// compress better than that.
pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 10 * 1024 * 1024;

/// The only Powertools function whose output can be much larger than the event.
const BASE64_GZIP: &str = "powertools_base64_gzip";

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

const POWERTOOLS_JSON: &str = "powertools_json";

/// The most JSON values (strings, numbers, literals, arrays, objects, object keys included)
/// `powertools_json` may build in one search. Parsed, a value takes about 90 bytes (a
/// reference-counted `jmespath` variable and its slot), so the text is counted before it is
/// parsed: without the bound, 10 MiB of `[0,0,0,…]` (a 14 KB gzipped event) built five million
/// values, 450 MiB, in a 128 MB function. 500,000 is about 45 MB, far more values than a
/// legitimate event carries (a full CloudWatch Logs batch is 10,000 events).
const MAX_JSON_VALUES: usize = 500_000;

/// The most operators an expression may have one inside another (`.`, `|`, `||`, `&&`,
/// comparisons, `!`, `?`, `*`, and the opening `(`, `[`, `{`), outside its quoted parts; elements
/// side by side count as the deepest of them (see [`operators`]). The `jmespath` parser and
/// interpreter recurse once per level of the expression's tree, and each operator can add a
/// level: a chain of a thousand `.a` overflowed the stack of a search (debug build, 8 MiB), a
/// few thousand the parser's, and 110 flattens (`[]`) a 2 MiB stack (a tokio worker's) in a
/// debug build, which aborts the process. Real expressions have a handful.
const MAX_EXPRESSION_OPERATORS: usize = 64;

/// The standard JMESPath functions plus `powertools_json`, `powertools_base64` and
/// `powertools_base64_gzip`. Immutable once built, so one runtime serves every invocation.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    runtime.register_function(POWERTOOLS_JSON, string_function(parse_json));
    // `jmespath`'s own fails on an empty array ("Expected to be a valid f64"); the specification
    // (and Python) answer null.
    runtime.register_function("avg", function_of_one(numbers(), average));
    // `jmespath`'s own go through f64, so that integers past 2^53 came out rounded (two ids
    // summed or floored to one idempotency key), and its `to_number` parsed any JSON text, not
    // numbers only (an array from `to_number('[1]')`, a hostile text parsed past the limit on
    // values). These keep integers exact, as Python does, and refuse what 64 bits cannot hold.
    runtime.register_function("sum", function_of_one(numbers(), sum));
    runtime.register_function("abs", function_of_one(ArgumentType::Number, abs));
    runtime.register_function(
        "ceil",
        function_of_one(ArgumentType::Number, |n| round(n, f64::ceil)),
    );
    runtime.register_function(
        "floor",
        function_of_one(ArgumentType::Number, |n| round(n, f64::floor)),
    );
    runtime.register_function("to_number", function_of_one(ArgumentType::Any, to_number));
    runtime.register_function("powertools_base64", string_function(decode_base64));
    runtime.register_function(BASE64_GZIP, string_function(decode_base64_gzip));
    // Within the search's text budget (`JmesPath::max_result_bytes`), where the `jmespath`
    // crate's own build any length.
    runtime.register_function(
        "to_string",
        function_of_one(
            ArgumentType::Union(vec![
                ArgumentType::Object,
                ArgumentType::Array,
                ArgumentType::Bool,
                ArgumentType::Number,
                ArgumentType::String,
                ArgumentType::Null,
            ]),
            to_string_within,
        ),
    );
    runtime.register_function(
        "join",
        Box::new(CustomFunction::new(
            Signature::new(
                vec![
                    ArgumentType::String,
                    ArgumentType::TypedArray(Box::new(ArgumentType::String)),
                ],
                None,
            ),
            Box::new(|args: &[Rcvar], ctx: &mut Context<'_>| {
                // The signature has checked the two arguments' types.
                let joined = match (args.first().map(|glue| &**glue), args.get(1).map(|v| &**v)) {
                    (Some(Variable::String(glue)), Some(Variable::Array(values))) => {
                        join_within(glue, values)
                    }
                    _ => Err("join: expected a string and an array of strings".to_owned()),
                };
                joined
                    .map(Rcvar::new)
                    .map_err(|message| JmespathError::from_ctx(ctx, ErrorReason::Parse(message)))
            }),
        )),
    );
    runtime
});

thread_local! {
    /// What `powertools_base64_gzip` may still produce in the search running on this thread.
    ///
    /// The functions are registered once, in the shared [`RUNTIME`], and `jmespath` gives them no
    /// per-expression state: [`JmesPath::search`] sets the expression's budget here for the
    /// duration of the search, which is synchronous, so searches never interleave on a thread.
    static GZIP_BUDGET: Cell<GzipBudget> =
        const { Cell::new(GzipBudget::new(DEFAULT_MAX_DECOMPRESSED_SIZE)) };

    /// How many values `powertools_json` may still build in the search running on this thread
    /// (see [`MAX_JSON_VALUES`]), set like [`GZIP_BUDGET`].
    static JSON_BUDGET: Cell<usize> = const { Cell::new(MAX_JSON_VALUES) };

    /// How many bytes `to_string` and `join` may still build in the search running on this
    /// thread (see [`JmesPath::max_result_bytes`]), set like [`GZIP_BUDGET`].
    static TEXT_BUDGET: Cell<usize> = const { Cell::new(MIN_MAX_RESULT_BYTES) };
}

/// The least of what one search may build: its result (its values as JSON text, or as what
/// they take in memory when that is more), and separately the text `to_string` and `join` build
/// (see [`JmesPath::max_result_bytes`]).
/// Lambda's largest event is 6 MB; 64 MiB leaves ten times that, and keeps what a few operators
/// can multiply (a literal per element of an array, `join` with a separator from the event,
/// `to_string` of `to_string`, each found by an attack) from running a function out of memory.
const MIN_MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// The most parts of an expression evaluated for each element it projects over (`[*]`, `[]`,
/// `*`, a filter, or a function's `&` argument): each builds or walks a value per element, and
/// an event's arrays can hold a million elements (a 1 MiB `[0,0,…]` holds half a million). A
/// real projection evaluates a handful (`Records[*].powertools_json(body).order_id`, 4; a
/// multi-select of six fields, about 14); an attack built an object nested 56 levels deep, or
/// 200 keys wide, per element, and ran a 1 MiB event out of memory, and called a function of
/// a thousand arguments per element for 18 s.
const MAX_WORK_PER_ELEMENT: u64 = 64;

/// The most parts of an expression one search evaluates, but for those it evaluates per
/// element of the data's arrays ([`MAX_WORK_PER_ELEMENT`]): a literal's values, and the work of
/// a projection over a literal times its size. Real expressions evaluate their own length's
/// worth; an attack nested projections over a 61-value literal four deep (61^4 arrays) and ran
/// out of memory.
const MAX_WORK_PER_SEARCH: u64 = 100_000;

/// The functions that take an expression reference (`&…`) and run it; anywhere else one is
/// refused when compiled.
const EXPRESSION_FUNCTIONS: [&str; 4] = ["map", "max_by", "min_by", "sort_by"];

/// The largest slice step accepted: the `jmespath` crate adds the step to an `i32` index, which
/// overflows (a panic) for a step near `i32::MAX` (`a[1::2147483647]`, found by an attack).
const MAX_SLICE_STEP: i32 = 1 << 30;

/// A compiled JMESPath expression over an event's JSON.
///
/// For configuration-driven paths (a setting, an environment variable). Besides the standard
/// JMESPath functions, the Powertools functions are available, as in Powertools for Python and
/// TypeScript:
///
/// - `powertools_json(s)`: parses the JSON text `s`, so that a path into an API Gateway `body`
///   does not change with the client's whitespace: `powertools_json(body).order_id`. One search
///   parses at most 500,000 values (about 45 MB once parsed; a larger text is refused before it
///   is parsed), and an integer beyond 64 bits is refused rather than rounded to a float (which
///   would make `100000000000000000000001` and `…002` one idempotency key; Python keeps it
///   exact: send such ids as strings). Python's `json.loads` reads a few texts that are
///   refused here, each with an error naming it: nesting deeper than 127 levels (serde_json's
///   bound, which keeps a hostile body from overflowing the stack), lone surrogate escapes
///   (`"\ud800"`, not Unicode text), and `NaN`, `Infinity` or a number beyond `f64` (`1e400`),
///   which are not JSON numbers. `-0` is the integer 0, as in Python. (A literal in the
///   expression itself is read by the `jmespath` crate, not by this function: `` `-0` `` is the
///   float `-0.0` there, and an integer literal beyond 64 bits is rounded to a float; write such
///   ids as string literals, `'100000000000000000000001'`. An index or slice bound beyond 32
///   bits, `a[2147483648]`, is refused when the expression is compiled, `Expected valid
///   number`, where Python takes any integer);
/// - `powertools_base64(s)`: decodes standard base64 to UTF-8 text, as Python's
///   `base64.b64decode` reads it: what is not in the alphabet (line breaks) is left out, a
///   complete padding ends the data, text that is not ASCII is refused;
/// - `powertools_base64_gzip(s)`: decodes base64, then gunzips every gzip member, to UTF-8 text
///   (CloudWatch Logs subscriptions): `powertools_json(powertools_base64_gzip(data)).logGroup`.
///   Zero bytes between and after members are padding, and other bytes after the last member,
///   or before the first, an error, as in Python; an empty payload is empty text. A member's
///   header is checked more strictly than Python checks it: a reserved flag or a wrong header
///   CRC is an error. What one search may decompress is
///   limited, to [`DEFAULT_MAX_DECOMPRESSED_SIZE`] unless
///   [`with_max_decompressed_size`](Self::with_max_decompressed_size) says otherwise.
///
/// `avg` of an empty array is null, as the JMESPath specification says. `sum`, `avg`, `abs`,
/// `ceil`, `floor` and `to_number` keep integers exact, as Python does (the `jmespath` crate's
/// own go through floats, which rounds integers past 2^53): `sum` adds left to right, exactly
/// until a float comes; an integer result beyond 64 bits is refused rather than rounded, and
/// so is a float sum beyond what JSON numbers hold (Python's `inf`); `ceil` and `floor` of a
/// float give an integer, or the float itself from 2^63. `to_number` reads numbers only (the
/// crate's read any JSON text), with surrounding whitespace and a sign as Python reads them,
/// but not `_` between digits, non-ASCII digits, `inf` or `nan` (null here, a number in
/// Python).
///
/// Three differences from Python's `jmespath` remain, from the `jmespath` crate's interpreter.
/// `to_string` (and `keys`, `values`) see an object's keys sorted, where Python keeps the
/// event's order, and `to_string` writes JSON as serde_json does: text unescaped (`é`, where
/// Python writes `\u00e9`) and floats in their shortest form (`1e-7`, Python `1e-07`): a key
/// built on `to_string` is not Python's text. Comparisons (`==`, `!=`, `<`, `>` in filters) and `sort`, `sort_by`, `max`,
/// `min`, `max_by`, `min_by` and `contains` compare numbers as floats, with a relative tolerance
/// for `==` (integers past 2^53 that differ compare equal, and so do `1` and
/// `1.0000000000000002`): filter on such ids as strings. And `<`, `>`, `<=`, `>=` on strings
/// give null, as the JMESPath specification says, where Python 1.1 orders strings (a filter on
/// ISO dates as `created > '2026-01-01'` matches nothing here): compare numbers, or select with
/// `starts_with`; a string compared with a number (`` Date > `2014` ``) is null too, where
/// Python raises a `TypeError`. A backtick literal that is not JSON (`` `INSERT` ``, the form
/// of AWS CLI examples) is a string, as Python reads it (without its deprecation warning);
/// `'INSERT'` is the standard spelling. An expression is checked
/// when it is compiled, more than Python checks it: a function that does not exist is refused
/// then, not when a search reaches it, and so is an expression of more than 64 operators one
/// inside another (each can nest it a level deeper; a few thousand overflowed the stack and
/// aborted the process; a multi-select's elements and a function's arguments, side by side,
/// count as the deepest of them), and
/// one that may copy a part of the data more than 16 times (`[@,@] | [@,@] | …` doubles it at
/// each stage: 22 stages ran a 1 KiB event out of memory; a real expression copies each part
/// once or twice), a slice step beyond 2^30, an expression reference (`&…`) anywhere but as the
/// argument of a function that runs it (`map`, `sort_by`, `max_by`, `min_by`), and one that
/// evaluates more than 64 parts of itself for each element it projects over (`[*]`, `[]`, `*`,
/// a filter, a function's `&` argument; a real projection evaluates a handful) or 100,000 in
/// one search (a literal's values, and projections over a literal for each of its elements).
/// What those counts cannot see is bounded while searching: the text `to_string` and `join`
/// build, and the result, each to
/// [`max_result_bytes`](Self::max_result_bytes) (64 MiB by default), past which the search
/// fails. A projection still builds its values for each element of the array it projects
/// over, as in every JMESPath implementation: an event from a caller that holds an array of a
/// million elements costs a million times what the expression builds for one (up to those 64
/// parts, a part about 100 bytes of values, a built object 8 parts) before the result's bound
/// applies; so do the elements `powertools_json` parses (up to 500,000, from a few KiB of gzip
/// through `powertools_base64_gzip`): a projection building 16 values for each of 500,000 parsed
/// zeros takes about 800 MB, and one building 64 parts' worth, about 3 GB. Where such events can
/// come, read the key from a typed event instead (`key_from` in the idempotency utility), or
/// keep projections over the event's arrays and decoded data narrow.
///
/// Clones share the compiled expression.
///
/// ```
/// use powertools_core::jmespath::JmesPath;
/// use serde_json::json;
///
/// // Header names in lowercase, as HTTP APIs send them and typed events write them.
/// let path = JmesPath::new(r#"[headers."idempotency-key", powertools_json(body).customer_id]"#)?;
/// let event = json!({
///     "headers": {"idempotency-key": "k-1"},
///     "body": "{\"customer_id\": \"c-7\", \"items\": []}",
/// });
/// assert_eq!(path.search(&event)?, json!(["k-1", "c-7"]));
/// # Ok::<(), powertools_core::Error>(())
/// ```
#[derive(Clone)]
pub struct JmesPath {
    expression: Arc<Expression<'static>>,
    /// The expression as written, when the compiled one differs (its legacy literals quoted).
    written: Option<Arc<str>>,
    /// Whether the expression calls `powertools_base64_gzip` (by its compiled tree), the only
    /// searches that need a decompression budget.
    decompresses: bool,
    /// Whether it may call `powertools_json`, the only searches that need a value budget.
    parses_json: bool,
    /// Whether it calls `to_string` or `join`, the only searches that need a text budget.
    builds_text: bool,
    max_decompressed_size: usize,
}

impl JmesPath {
    /// Compiles `expression`, with the default decompression limit,
    /// [`DEFAULT_MAX_DECOMPRESSED_SIZE`].
    ///
    /// # Errors
    /// [`Error::InvalidJmesPath`] when it is not valid JMESPath.
    pub fn new(expression: &str) -> Result<Self, Error> {
        let operators = operators(expression);
        if operators > MAX_EXPRESSION_OPERATORS {
            return Err(Error::InvalidJmesPath {
                expression: expression.to_owned(),
                reason: format!(
                    "{operators} operators (`.`, `|`, `||`, `&&`, comparisons, `!`, `?`, `*`, \
                     `&`, and opening parentheses, brackets and braces) one inside another: at \
                     most \
                     {MAX_EXPRESSION_OPERATORS} are accepted, as each can nest the expression \
                     one level deeper (elements side by side, in a multi-select or a function's \
                     arguments, count as the deepest of them)"
                ),
            });
        }
        let quoted = quote_legacy_literals(expression);
        let compiled = RUNTIME
            .compile(&quoted)
            .map_err(|error| Error::InvalidJmesPath {
                expression: expression.to_owned(),
                reason: error.reason.to_string(),
            })?;
        let shape = Shape::of(compiled.as_ast());
        // `jmespath` looks functions up only when a search reaches them: a misspelt name would
        // fail only on the events that take that branch.
        if let Some(name) = shape
            .functions
            .iter()
            .find(|name| RUNTIME.get_function(name).is_none())
        {
            return Err(Error::InvalidJmesPath {
                expression: expression.to_owned(),
                reason: format!(
                    "unknown function `{name}`: the JMESPath functions and powertools_json, \
                     powertools_base64 and powertools_base64_gzip are available"
                ),
            });
        }
        // By the functions the compiled expression calls, not its text, where a quoted name
        // with an escape (`("powertools_\u006Ason")(body)`) hid the call, and with it the
        // search's budget (found by an attack).
        let (decompresses, parses_json) = (shape.calls(BASE64_GZIP), shape.calls(POWERTOOLS_JSON));
        let builds_text = shape.calls("to_string") || shape.calls("join");
        let refused = |reason: String| Error::InvalidJmesPath {
            expression: expression.to_owned(),
            reason,
        };
        if let Some(step) = shape.slice_step_over_limit {
            return Err(refused(format!(
                "a slice step of {step}: at most {MAX_SLICE_STEP} in magnitude is accepted"
            )));
        }
        if shape.misplaced_expression_reference {
            return Err(refused(
                "an expression reference (`&…`) is a function's argument only (`sort_by(a, \
                 &b)`), as the JMESPath specification says"
                    .to_owned(),
            ));
        }
        if shape.per_search > MAX_WORK_PER_SEARCH {
            return Err(refused(format!(
                "it evaluates {} parts of itself in one search (its literals' values, and \
                 projections over them for each of their elements): at most \
                 {MAX_WORK_PER_SEARCH} are accepted",
                shape.per_search
            )));
        }
        if shape.per_element > MAX_WORK_PER_ELEMENT {
            return Err(refused(format!(
                "it evaluates {} parts of itself for each element it projects over (`[*]`, `[]`, \
                 `*`, a filter, or a function's `&` argument): at most {MAX_WORK_PER_ELEMENT} \
                 are accepted, as each builds or walks a value per element, and an event's \
                 arrays can hold a million",
                shape.per_element
            )));
        }
        // A short expression can copy the data exponentially (`[@,@] | [@,@] | …`: shared while
        // the search runs, copied whole into the result, `to_string` or a flatten), which ran
        // out of memory and aborted the process at 22 such stages on a 1 KiB event (found by an
        // attack).
        let repeated = Footprint::of(compiled.as_ast()).worst;
        if repeated > MAX_REPETITION {
            return Err(Error::InvalidJmesPath {
                expression: expression.to_owned(),
                reason: format!(
                    "it may copy one part of the data {} times (multi-selects or function \
                     arguments that select the same data, piped or projected into each other): \
                     at most {MAX_REPETITION} are accepted, as a search builds every copy",
                    if repeated == u64::MAX {
                        "more than 2^64".to_owned()
                    } else {
                        repeated.to_string()
                    }
                ),
            });
        }
        Ok(Self {
            written: matches!(quoted, Cow::Owned(_)).then(|| Arc::from(expression)),
            expression: Arc::new(compiled),
            decompresses,
            parses_json,
            builds_text,
            max_decompressed_size: DEFAULT_MAX_DECOMPRESSED_SIZE,
        })
    }

    /// Limits what `powertools_base64_gzip` may decompress in one search of this expression to
    /// `bytes` (in total, when the expression calls it more than once, on each record of a
    /// batch for example).
    ///
    /// Decompression stops, and the search fails with [`Error::DecompressedSizeExceeded`], as
    /// soon as the output would pass the limit; nothing larger is allocated. The default is
    /// [`DEFAULT_MAX_DECOMPRESSED_SIZE`]; `usize::MAX` lifts the limit. Other clones of the
    /// expression keep their own limit.
    ///
    /// ```
    /// use powertools_core::{Error, jmespath::JmesPath};
    /// # use base64::Engine as _;
    /// # use std::io::Write as _;
    /// use serde_json::json;
    ///
    /// let path = JmesPath::new("powertools_json(powertools_base64_gzip(data)).logGroup")?
    ///     .with_max_decompressed_size(64 * 1024);
    /// assert_eq!(path.max_decompressed_size(), 64 * 1024);
    ///
    /// // 1 MiB of log data, gzipped to a few kilobytes:
    /// let logs = format!(r#"{{"logGroup": "/aws/lambda/orders", "pad": "{}"}}"#, " ".repeat(1 << 20));
    /// # let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    /// # gzip.write_all(logs.as_bytes()).unwrap();
    /// # let data = base64::engine::general_purpose::STANDARD.encode(gzip.finish().unwrap());
    /// let error = path.search(&json!({ "data": data })).unwrap_err();
    /// assert!(matches!(error, Error::DecompressedSizeExceeded { limit: 65536, .. }));
    /// # Ok::<(), powertools_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed_size = bytes;
        self
    }

    /// The most `powertools_base64_gzip` may decompress in one search of this expression, in
    /// bytes.
    pub fn max_decompressed_size(&self) -> usize {
        self.max_decompressed_size
    }

    /// The expression, as written.
    pub fn as_str(&self) -> &str {
        self.written
            .as_deref()
            .unwrap_or_else(|| self.expression.as_str())
    }

    /// The same expression with each header it names with a capital letter (see
    /// [`header_in_another_case`](Self::header_in_another_case)) named in lowercase, as a typed
    /// API Gateway or ALB event has them, and the same decompression limit; `None` when it
    /// names none. For telling an expression that finds nothing only because of a header's case.
    ///
    /// ```
    /// use powertools_core::jmespath::JmesPath;
    ///
    /// let path = JmesPath::new(r#"[headers."Idempotency-Key", headers."X-Tenant", body]"#)?;
    /// let lowercase = path.with_headers_in_lowercase().expect("two headers with capitals");
    /// assert_eq!(lowercase.as_str(), r#"[headers."idempotency-key", headers."x-tenant", body]"#);
    /// assert!(JmesPath::new("headers.id")?.with_headers_in_lowercase().is_none());
    /// # Ok::<(), powertools_core::Error>(())
    /// ```
    pub fn with_headers_in_lowercase(&self) -> Option<JmesPath> {
        // Bounded: each round lowers one name, and a name once lowered is not found again.
        const MOST_HEADERS: usize = 16;
        let mut lowered: Option<JmesPath> = None;
        for _ in 0..MOST_HEADERS {
            let current = lowered.as_ref().unwrap_or(self);
            let Some((_, name)) = current.header_in_another_case() else {
                break;
            };
            // Where the name is in the expression's text (a slice of it).
            let text = current.as_str();
            let at = (name.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            let end = at.checked_add(name.len())?;
            let next = format!(
                "{}{}{}",
                text.get(..at)?,
                name.to_ascii_lowercase(),
                text.get(end..)?
            );
            lowered = Some(
                JmesPath::new(&next)
                    .ok()?
                    .with_max_decompressed_size(self.max_decompressed_size),
            );
        }
        lowered
    }

    /// The first header the expression names with a capital letter (`headers."Idempotency-Key"`),
    /// as its field (`headers`, `multiValueHeaders`) and name. Such a path finds nothing in a
    /// typed API Gateway or ALB event, whose `HeaderMap` writes names in lowercase, as HTTP APIs
    /// send them: the utilities say so when it finds nothing.
    ///
    /// ```
    /// use powertools_core::jmespath::JmesPath;
    ///
    /// let path = JmesPath::new(r#"headers."X-Correlation-Id""#)?;
    /// assert_eq!(path.header_in_another_case(), Some(("headers", "X-Correlation-Id")));
    /// assert_eq!(JmesPath::new("body.headers.Foo")?.header_in_another_case(), None);
    /// // The field quoted, as JMESPath allows.
    /// let quoted = JmesPath::new(r#""headers"."X-Id""#)?;
    /// assert_eq!(quoted.header_in_another_case(), Some((r#""headers""#, "X-Id")));
    /// # Ok::<(), powertools_core::Error>(())
    /// ```
    pub fn header_in_another_case(&self) -> Option<(&'static str, &str)> {
        let expression = self.as_str();
        [
            "multiValueHeaders.",
            "headers.",
            "\"multiValueHeaders\".",
            "\"headers\".",
        ]
        .into_iter()
        .flat_map(|field| {
            expression
                .match_indices(field)
                // The event's own `headers`, not a field of that name inside another
                // (`body.headers.X`, `myheaders.X`).
                .filter(|&(at, _)| {
                    // The character before, spaces skipped: none, or one that begins an
                    // expression (`[`, `(`, `,`, `||`, `&&`, `!`, `{`, `:`), not a `.` (a field
                    // inside another) or a `|` alone (a pipe searches the result before it).
                    let before = expression[..at].trim_end();
                    match before.chars().next_back() {
                        None => true,
                        Some('|') => before.ends_with("||"),
                        Some(c) => !(c.is_alphanumeric() || c == '_' || c == '.' || c == '"'),
                    }
                })
                .map(move |(at, _)| (field, &expression[at + field.len()..]))
        })
        .filter_map(|(field, rest)| {
            let name = match rest.strip_prefix('"') {
                Some(quoted) => &quoted[..quoted.find('"')?],
                None => {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                }
            };
            name.bytes()
                .any(|byte| byte.is_ascii_uppercase())
                .then(|| (field.trim_end_matches('.'), name))
        })
        .next()
    }

    /// Evaluates the expression on `data`.
    ///
    /// # Errors
    /// - [`Error::DecompressedSizeExceeded`] when `powertools_base64_gzip` would decompress more
    ///   than [`max_decompressed_size`](Self::max_decompressed_size);
    /// - [`Error::JmesPathFailed`] when evaluation fails otherwise: a function given the wrong
    ///   type, text that is not JSON for `powertools_json`, invalid base64 or gzip, data that
    ///   does not serialize.
    pub fn search<T: Serialize + ?Sized>(&self, data: &T) -> Result<Value, Error> {
        // As serde_json writes the data, as JSON the expression reads: the `jmespath` crate's
        // own serializer refused any `u128` or `i128` (`5` included) and any map whose keys
        // are not strings, wherever they were in the event (found by an attack from the docs).
        let data = serde_json::to_value(data).map_err(|error| {
            self.failed(format!(
                "the data cannot be written as JSON to search it: {error}"
            ))
        })?;
        self.search_value(data)
    }

    /// Evaluates the expression on `data`, JSON already: [`search`](Self::search) without
    /// writing it again.
    ///
    /// ```
    /// use powertools_core::jmespath::JmesPath;
    /// use serde_json::json;
    ///
    /// let path = JmesPath::new("powertools_json(body).order_id")?;
    /// let event = json!({"body": "{\"order_id\": \"o-1\"}"});
    /// assert_eq!(path.search_value(event)?, json!("o-1"));
    /// # Ok::<(), powertools_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`search`](Self::search).
    pub fn search_value(&self, data: Value) -> Result<Value, Error> {
        let data = Rcvar::new(variable_of(data));
        let data = &data;
        let _json_budget = self
            .parses_json
            .then(|| JsonBudgetScope(JSON_BUDGET.replace(MAX_JSON_VALUES)));
        let _text_budget = self
            .builds_text
            .then(|| TextBudgetScope(TEXT_BUDGET.replace(self.max_result_bytes())));
        let found = if self.decompresses {
            let budget = BudgetScope::enter(self.max_decompressed_size);
            let found = self.evaluate(data);
            if found.is_err() && budget.exceeded() {
                return Err(Error::DecompressedSizeExceeded {
                    expression: self.as_str().to_owned(),
                    limit: self.max_decompressed_size,
                });
            }
            found
        } else {
            self.evaluate(data)
        }
        .map_err(|error| match error.reason {
            // The Powertools functions' own messages, which say which function and why;
            // `jmespath` files them as parse errors, which they are not.
            ErrorReason::Parse(message) => self.failed(message),
            // A runtime error points at its function's opening parenthesis: named, so that one
            // of several nested functions is told apart (`powertools_json(powertools_base64(
            // data))` on a record without `data`: found by an attack), as Python names it.
            other => {
                match failing_function(self.expression.as_ast(), error.offset, &other.to_string()) {
                    Some(function) => self.failed(format!("in function {function}(): {other}")),
                    None => self.failed(other.to_string()),
                }
            }
        })?;
        let mut left = self.max_result_bytes();
        to_value_within(&found, &mut left).ok_or_else(|| {
            self.failed(format!(
                "the result would take more than {} bytes as JSON (see \
                 `JmesPath::max_result_bytes`)",
                self.max_result_bytes()
            ))
        })
    }

    /// The most one search may build: its result (each value counted as its JSON text, or as
    /// the 32 bytes it takes in memory when that is more), and apart from it the text
    /// `to_string` and `join` build; past either the search fails. 64 MiB, or three times
    /// [`max_decompressed_size`](Self::max_decompressed_size) when that is larger.
    ///
    /// ```
    /// use powertools_core::jmespath::JmesPath;
    /// use serde_json::json;
    ///
    /// // A 100-byte separator between 1,000,000 empty strings: 100 MB of text.
    /// let path = JmesPath::new("join(separator, items)")?;
    /// let event = json!({"separator": "-".repeat(100), "items": vec![""; 1_000_000]});
    /// assert!(path.search(&event).is_err());
    /// # Ok::<(), powertools_core::Error>(())
    /// ```
    pub fn max_result_bytes(&self) -> usize {
        MIN_MAX_RESULT_BYTES.max(self.max_decompressed_size.saturating_mul(3))
    }

    /// The `jmespath` crate's search, a panic of its own (a bug, such as the slice arithmetic
    /// that overflowed) an error rather than the invocation's end.
    fn evaluate(&self, data: &Rcvar) -> Result<Rcvar, JmespathError> {
        let search = || {
            let mut context = Context::new(self.expression.as_str(), &RUNTIME);
            ::jmespath::interpret(data, self.expression.as_ast(), &mut context)
        };
        crate::failure::catch_quiet_panic(search).unwrap_or_else(|_| {
            Err(JmespathError::new(
                self.as_str(),
                0,
                ErrorReason::Parse("the jmespath crate panicked evaluating it".to_owned()),
            ))
        })
    }

    fn failed(&self, reason: String) -> Error {
        Error::JmesPathFailed {
            expression: self.as_str().to_owned(),
            reason,
        }
    }
}

impl std::fmt::Debug for JmesPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JmesPath").field(&self.as_str()).finish()
    }
}

/// An expression's headers named in lowercase ([`JmesPath::with_headers_in_lowercase`]), for
/// telling whether it missed what it looked for only because of a header's case, and saying so
/// once. Each check searches the event again, so only the first [`HEADER_CASE_TRIES`] are made
/// (events without the header never make it say anything). Shared through an `Arc` by the
/// clones of what holds it.
///
/// ```
/// use powertools_core::jmespath::{HeaderCaseCheck, JmesPath};
/// use serde_json::json;
///
/// let path = JmesPath::new(r#"headers."X-Correlation-Id""#)?;
/// let check = HeaderCaseCheck::of(&path).expect("a header with capitals");
/// let typed = json!({"headers": {"x-correlation-id": "c-1"}});
/// assert_eq!(path.search(&typed)?, json!(null));
/// assert!(check.try_again());
/// assert_eq!(check.lowercase().search(&typed)?, json!("c-1"));
/// assert!(check.first_to_say());
/// // Said: no more searches, nothing said again.
/// assert!(!check.try_again() && !check.first_to_say());
/// # Ok::<(), powertools_core::Error>(())
/// ```
#[derive(Debug)]
pub struct HeaderCaseCheck {
    lowercase: JmesPath,
    said: std::sync::atomic::AtomicBool,
    tries_left: std::sync::atomic::AtomicU8,
}

/// How many checks a [`HeaderCaseCheck`] makes at most.
pub const HEADER_CASE_TRIES: u8 = 16;

impl HeaderCaseCheck {
    /// The check of `path`, when it names a header with capitals; `None` otherwise.
    pub fn of(path: &JmesPath) -> Option<Self> {
        path.with_headers_in_lowercase()
            .map(|lowercase| HeaderCaseCheck {
                lowercase,
                said: std::sync::atomic::AtomicBool::new(false),
                tries_left: std::sync::atomic::AtomicU8::new(HEADER_CASE_TRIES),
            })
    }

    /// The expression with its headers in lowercase.
    pub fn lowercase(&self) -> &JmesPath {
        &self.lowercase
    }

    /// Whether to search again with [`lowercase`](Self::lowercase): nothing said yet, and a try
    /// left (this takes it).
    pub fn try_again(&self) -> bool {
        use std::sync::atomic::Ordering;
        !self.said.load(Ordering::Relaxed)
            && self
                .tries_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    }

    /// Whether the caller is the first to say that the lowercase search found more: then it
    /// warns; never again after.
    pub fn first_to_say(&self) -> bool {
        !self.said.swap(true, std::sync::atomic::Ordering::Relaxed)
    }
}

/// `value` as the `jmespath` crate's data, built from it directly. Through `Serialize` (the
/// crate's own way), a number of a build with serde_json's `arbitrary_precision` became the map
/// serde_json writes it through (`{"$serde_json::private::Number": "1.50"}`), so that numbers
/// were compared and keyed by their text (found by an attack from the docs: `1.5` and `1.50`
/// gave two idempotency keys).
fn variable_of(value: Value) -> Variable {
    match value {
        Value::Null => Variable::Null,
        Value::Bool(flag) => Variable::Bool(flag),
        Value::Number(number) => Variable::Number(number),
        Value::String(text) => Variable::String(text),
        Value::Array(items) => Variable::Array(
            items
                .into_iter()
                .map(|item| Rcvar::new(variable_of(item)))
                .collect(),
        ),
        Value::Object(members) => Variable::Object(
            members
                .into_iter()
                .map(|(name, member)| (name, Rcvar::new(variable_of(member))))
                .collect(),
        ),
    }
}

/// What `powertools_base64_gzip` may still produce in a search, and whether it was refused.
#[derive(Debug, Clone, Copy)]
struct GzipBudget {
    remaining: usize,
    exceeded: bool,
}

impl GzipBudget {
    const fn new(limit: usize) -> Self {
        Self {
            remaining: limit,
            exceeded: false,
        }
    }
}

/// The budget of one search on this thread; the previous one is restored when dropped, even
/// on a panic.
struct BudgetScope {
    previous: GzipBudget,
}

impl BudgetScope {
    fn enter(limit: usize) -> Self {
        Self {
            previous: GZIP_BUDGET.replace(GzipBudget::new(limit)),
        }
    }

    /// Whether `powertools_base64_gzip` refused to pass the limit in this search.
    fn exceeded(&self) -> bool {
        GZIP_BUDGET.get().exceeded
    }
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        GZIP_BUDGET.set(self.previous);
    }
}

/// The previous text budget of this thread, restored when a search ends.
struct TextBudgetScope(usize);

impl Drop for TextBudgetScope {
    fn drop(&mut self) {
        TEXT_BUDGET.set(self.0);
    }
}

/// Takes `bytes` of the search's text budget, or says why not, for `function`.
fn take_text(function: &str, bytes: usize) -> Result<(), String> {
    let left = TEXT_BUDGET.get();
    if bytes > left {
        return Err(format!(
            "{function}: its text would be {bytes} bytes, more than the {left} left of what one \
             search may build (see `JmesPath::max_result_bytes`)"
        ));
    }
    TEXT_BUDGET.set(left - bytes);
    Ok(())
}

/// `to_string`, as the `jmespath` crate's, within the search's text budget: nested, each level
/// escapes the quotes of the one inside, doubling the text (found by an attack).
fn to_string_within(value: &Variable) -> Result<Variable, String> {
    /// A writer that refuses to grow past `limit`.
    struct Bounded {
        text: Vec<u8>,
        limit: usize,
    }
    impl io::Write for Bounded {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.text.len() + bytes.len() > self.limit {
                return Err(io::Error::other("over the limit"));
            }
            self.text.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    if let Variable::String(_) = value {
        return Ok(value.clone());
    }
    let mut writer = Bounded {
        text: Vec::new(),
        limit: TEXT_BUDGET.get(),
    };
    if serde_json::to_writer(&mut writer, value).is_err() {
        // Over the budget (a variable always serializes otherwise).
        return Err(format!(
            "to_string: its text would be more than the {} bytes left of what one search may \
             build (see `JmesPath::max_result_bytes`)",
            writer.limit
        ));
    }
    take_text("to_string", writer.text.len())?;
    String::from_utf8(writer.text)
        .map(Variable::String)
        .map_err(|_| "to_string: the text is not UTF-8".to_owned())
}

/// `join`, as the `jmespath` crate's, within the search's text budget: a separator from the
/// event between a million empty strings is megabytes per byte of it (found by an attack).
fn join_within(glue: &str, values: &[Rcvar]) -> Result<Variable, String> {
    let mut parts = Vec::with_capacity(values.len());
    let mut bytes = glue.len().saturating_mul(values.len().saturating_sub(1));
    for value in values {
        let part = value
            .as_string()
            .ok_or_else(|| "join: expected an array of strings".to_owned())?;
        bytes = bytes.saturating_add(part.len());
        parts.push(part.as_str());
    }
    take_text("join", bytes)?;
    Ok(Variable::String(parts.join(glue)))
}

/// `value` as a JSON value, or `None` once it would take more than `left` bytes (each value
/// its JSON text, or its size in memory when that is more):
/// a result shares values while the search runs (a literal per element of an array is one
/// value), and is copied whole here.
fn to_value_within(value: &Variable, left: &mut usize) -> Option<Value> {
    // Each value counted as its text and a separator, or as what it takes in memory (a
    // `serde_json::Value`, 32 bytes), whichever is more: a million empty arrays are 3 MB of
    // text but 32 MB in memory (an attack passed the bound by 16 times in memory).
    const IN_MEMORY: usize = std::mem::size_of::<Value>();
    fn take(left: &mut usize, bytes: usize) -> Option<()> {
        *left = left.checked_sub(bytes.saturating_add(1).max(IN_MEMORY))?;
        Some(())
    }
    Some(match value {
        Variable::Null => {
            take(left, 4)?;
            Value::Null
        }
        Variable::Bool(flag) => {
            take(left, 5)?;
            Value::Bool(*flag)
        }
        Variable::Number(number) => {
            take(left, 8)?;
            Value::Number(number.clone())
        }
        Variable::String(text) => {
            take(left, text.len())?;
            Value::String(text.clone())
        }
        // A `Value::Array` or `Value::Object` takes more than its text: its vector or map.
        Variable::Array(items) => {
            take(left, 64)?;
            Value::Array(
                items
                    .iter()
                    .map(|item| to_value_within(item, left))
                    .collect::<Option<_>>()?,
            )
        }
        Variable::Object(entries) => {
            take(left, 96)?;
            let mut object = serde_json::Map::new();
            for (key, item) in entries {
                take(left, key.len().saturating_add(48))?;
                object.insert(key.clone(), to_value_within(item, left)?);
            }
            Value::Object(object)
        }
        // Refused when compiled (an expression reference is run by the functions that take
        // one, never a value).
        Variable::Expref(_) => return None,
    })
}

/// What [`JmesPath::new`] checks in a compiled expression besides its copies ([`Footprint`]).
#[derive(Debug, Default)]
struct Shape<'a> {
    /// A slice step beyond [`MAX_SLICE_STEP`] in magnitude.
    slice_step_over_limit: Option<i32>,
    /// An expression reference (`&…`) anywhere but as a function's argument.
    misplaced_expression_reference: bool,
    /// The functions it calls.
    functions: Vec<&'a str>,
    /// The most parts of the expression evaluated for one element of a projection (or of a
    /// function's expression argument): see [`MAX_WORK_PER_ELEMENT`].
    per_element: u64,
    /// The parts of the expression one search evaluates, but for those per element of the
    /// data's arrays: see [`MAX_WORK_PER_SEARCH`].
    per_search: u64,
}

impl<'a> Shape<'a> {
    fn of(ast: &'a Ast) -> Self {
        let mut shape = Self::default();
        let (work, _) = shape.work(ast, None, false);
        shape.per_search = work;
        shape
    }

    fn calls(&self, function: &str) -> bool {
        self.functions.contains(&function)
    }

    /// How many parts of the expression one evaluation of `node` runs (a literal's values
    /// included), and, when its value is built from the expression's own literals alone, an
    /// upper bound of how many values it holds; `input` is that bound for the value `node`
    /// runs on (`None` for the data). A projection over the data's elements is bounded per
    /// element ([`Shape::per_element`]: they are parts of the data, so nested ones stay within
    /// the values the data holds); one over the expression's own literal multiplies the work of
    /// its evaluation by the literal's size (an attack nested projections over a literal of 61
    /// values, 61^k, and ran out of memory). Recursive: the operator limit, checked first,
    /// bounds the depth.
    fn work(
        &mut self,
        node: &'a Ast,
        input: Option<u64>,
        function_argument: bool,
    ) -> (u64, Option<u64>) {
        let all = |shape: &mut Self, nodes: &[&'a Ast]| {
            let mut work = 1_u64;
            let mut size = Some(1_u64);
            for node in nodes {
                let (more, held) = shape.work(node, input, false);
                work = work.saturating_add(more);
                size = size.zip(held).map(|(size, held)| size.saturating_add(held));
            }
            (work, size)
        };
        match node {
            Ast::Slice { step, .. } => {
                if step.unsigned_abs() > MAX_SLICE_STEP.unsigned_abs() {
                    self.slice_step_over_limit = Some(*step);
                }
                (1, input)
            }
            Ast::Literal { value, .. } => {
                let values = values_in(value);
                (values, Some(values))
            }
            Ast::Identity { .. } | Ast::Field { .. } | Ast::Index { .. } => (1, input),
            Ast::Function { name, args, .. } => {
                self.functions.push(name);
                let mut work = 1_u64;
                let mut size = Some(1_u64);
                let mut elements = Some(0_u64);
                for arg in args.iter().filter(|arg| !matches!(arg, Ast::Expref { .. })) {
                    let (more, held) = self.work(arg, input, true);
                    work = work.saturating_add(more);
                    size = size.zip(held).map(|(size, held)| size.saturating_add(held));
                    elements = elements.zip(held).map(|(most, held)| most.max(held));
                }
                // An expression argument runs on each element of the function's array
                // (`sort_by`, `map`).
                for arg in args.iter().filter(|arg| matches!(arg, Ast::Expref { .. })) {
                    let Ast::Expref { ast, .. } = arg else {
                        continue;
                    };
                    // Only the functions that take one run it; any other would hand the
                    // reference on as a value (`not_null(&…)`, whose text is the expression's
                    // whole tree, per element: a fifth attack).
                    if !EXPRESSION_FUNCTIONS.contains(&name.as_str()) {
                        self.misplaced_expression_reference = true;
                    }
                    let (each, held) = self.work(ast, elements, false);
                    match elements {
                        Some(elements) => {
                            work = work.saturating_add(elements.saturating_mul(each));
                            // `map` holds what the expression returns for each element (an
                            // attack: `map(&L2, L1)` counted as L1 alone); what it decodes is
                            // data (a fifth attack).
                            size = size.zip(held).map(|(size, held)| {
                                size.saturating_add(elements.saturating_mul(held))
                            });
                        }
                        None => self.per_element = self.per_element.max(each),
                    }
                }
                // What the Powertools functions decode is data, however small the text it came
                // from (a literal of a few bytes of gzip is 500,000 values): projections over it
                // are bounded per element, as over the event's (an attack).
                if [POWERTOOLS_JSON, "powertools_base64", BASE64_GZIP].contains(&name.as_str()) {
                    size = None;
                }
                (work, size)
            }
            Ast::Expref { ast, .. } => {
                if !function_argument {
                    self.misplaced_expression_reference = true;
                }
                self.work(ast, input, false)
            }
            Ast::Projection { lhs, rhs, .. } => {
                let (before, elements) = self.work(lhs, input, false);
                let (each, held) = self.work(rhs, elements, false);
                match elements {
                    // What each element's evaluation decodes is data (a fifth attack: it was
                    // counted as the literal's size).
                    Some(elements) => (
                        before
                            .saturating_add(elements.saturating_mul(each))
                            .saturating_add(1),
                        held.map(|held| elements.saturating_mul(held).saturating_add(1)),
                    ),
                    None => {
                        self.per_element = self.per_element.max(each);
                        (before.saturating_add(1), None)
                    }
                }
            }
            Ast::Subexpr { lhs, rhs, .. } => {
                let (before, held) = self.work(lhs, input, false);
                let (after, result) = self.work(rhs, held, false);
                (before.saturating_add(after), result)
            }
            Ast::Comparison { lhs, rhs, .. } => {
                let (left, _) = self.work(lhs, input, false);
                let (right, _) = self.work(rhs, input, false);
                (left.saturating_add(right).saturating_add(1), Some(1))
            }
            Ast::Not { node, .. } => {
                let (work, _) = self.work(node, input, false);
                (work.saturating_add(1), Some(1))
            }
            // One side or the other.
            Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
                let (left, left_size) = self.work(lhs, input, false);
                let (right, right_size) = self.work(rhs, input, false);
                (
                    left.saturating_add(right).saturating_add(1),
                    left_size
                        .zip(right_size)
                        .map(|(left, right)| left.max(right)),
                )
            }
            Ast::Condition {
                predicate, then, ..
            } => {
                let (test, _) = self.work(predicate, input, false);
                let (work, held) = self.work(then, input, false);
                (test.saturating_add(work).saturating_add(1), held)
            }
            Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => all(self, &[node]),
            // A built array and object cost more than a part: counted as 2 and 8 (each about
            // what 100 bytes of values cost), so that a projection building small objects per
            // element is counted as what it takes (a sixth attack: 16 one-key objects per
            // element of a 917 KB event took 1.2 GB).
            Ast::MultiList { elements, .. } => {
                let elements: Vec<&Ast> = elements.iter().collect();
                let (work, size) = all(self, &elements);
                (work.saturating_add(1), size)
            }
            // Each key is a value built too.
            Ast::MultiHash { elements, .. } => {
                let values: Vec<&Ast> = elements.iter().map(|pair| &pair.value).collect();
                let (work, size) = all(self, &values);
                let work = work.saturating_add(7);
                let keys = elements
                    .iter()
                    .fold(0_u64, |sum, pair| sum.saturating_add(text_parts(&pair.key)));
                (
                    work.saturating_add(keys),
                    size.map(|size| size.saturating_add(keys)),
                )
            }
        }
    }
}

/// How many values `value` holds, itself included (an object's keys too).
fn values_in(value: &Variable) -> u64 {
    match value {
        Variable::Array(items) => items
            .iter()
            .fold(1_u64, |sum, item| sum.saturating_add(values_in(item))),
        Variable::Object(entries) => entries.values().fold(1_u64, |sum, item| {
            sum.saturating_add(1).saturating_add(values_in(item))
        }),
        Variable::String(text) => text_parts(text),
        _ => 1,
    }
}

/// A text as parts of an expression: one per 64 bytes, so that a long key copied for each
/// element counts as what it costs (a fifth attack: a 4 KiB key per element of a million,
/// counted as one part).
fn text_parts(text: &str) -> u64 {
    count(text.len() / 64).saturating_add(1)
}

/// `n` as a `u64` (a `usize` always fits on the targets Lambda runs).
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The previous JSON budget of this thread, restored when a search ends.
struct JsonBudgetScope(usize);

impl Drop for JsonBudgetScope {
    fn drop(&mut self) {
        JSON_BUDGET.set(self.0);
    }
}

/// `expression` with each backtick literal that is not JSON read as a string, as Python's
/// `jmespath` reads it (with a deprecation warning): `` Records[?eventName == `INSERT`] ``,
/// common in AWS CLI examples and older expressions, which the `jmespath` crate refuses
/// (found by a user porting expressions: "Unable to parse literal JSON INSERT"). As Python:
/// the text, leading whitespace left out, read as the inside of a JSON string.
fn quote_legacy_literals(expression: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut chars = expression.char_indices();
    while let Some((at, c)) = chars.next() {
        if let Some(open) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == open => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '`' => {
                // The literal runs to the next backtick that is not escaped.
                let mut end = None;
                let mut escaping = false;
                for (inner_at, inner) in chars.by_ref() {
                    match inner {
                        _ if escaping => escaping = false,
                        '\\' => escaping = true,
                        '`' => {
                            end = Some(inner_at);
                            break;
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    break;
                };
                let lexeme = expression[at + 1..end].replace("\\`", "`");
                // JSON at any depth, without building it (a JSON literal nested deeper than
                // serde_json builds a value of is refused when compiled, as before, not made
                // a string: a review).
                if serde_json::from_str::<serde::de::IgnoredAny>(&lexeme).is_ok() {
                    continue;
                }
                // Python's `lstrip`: whitespace, and the separators `\x1c` to `\x1f` too.
                let unpadded = lexeme.trim_start_matches(|c: char| {
                    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
                });
                let Ok(text) = serde_json::from_str::<String>(&format!("\"{unpadded}\"")) else {
                    continue;
                };
                let Ok(json) = serde_json::to_string(&text) else {
                    continue;
                };
                out.push_str(&expression[copied..at]);
                out.push('`');
                out.push_str(&json.replace('`', "\\`"));
                out.push('`');
                copied = end + 1;
            }
            _ => {}
        }
    }
    if copied == 0 {
        return Cow::Borrowed(expression);
    }
    out.push_str(&expression[copied..]);
    Cow::Owned(out)
}

/// How many operators of `expression` are nested one inside another, outside its quoted parts
/// (see [`MAX_EXPRESSION_OPERATORS`]): `||` and `&&` count once, `==`, `<=` and the like once.
/// Elements side by side (a multi-select's, a function's arguments, separated by `,`) count as
/// the deepest of them: each is a child of its group, not of the one before it (counted in
/// all, a flat multi-select of 32 paths was refused, which Python evaluates). Every operator
/// of an element counts, before and after a group in it, as a chain nests what came before it
/// under what comes after: an upper bound of the depth the parser and the interpreter reach.
fn operators(expression: &str) -> usize {
    /// One level of grouping: the operators of its current element, and the deepest group in
    /// that element; the deepest element before it.
    #[derive(Default)]
    struct Level {
        operators: usize,
        deepest_group: usize,
        deepest_element: usize,
    }
    impl Level {
        fn depth(&self) -> usize {
            self.deepest_element
                .max(self.operators + self.deepest_group)
        }
    }
    let mut levels = vec![Level::default()];
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut previous = b' ';
    for &byte in expression.as_bytes() {
        if let Some(open) = quote {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if byte == open => quote = None,
                _ => {}
            }
            previous = b' ';
            continue;
        }
        let level = levels.len() - 1;
        match byte {
            b'"' | b'\'' | b'`' => quote = Some(byte),
            // The second character of `||`, `&&`, `==`, `!=`, `<=`, `>=`.
            b'|' | b'&' | b'='
                if previous == byte || (byte == b'=' && b"!<>".contains(&previous)) => {}
            b'(' | b'[' | b'{' => {
                levels[level].operators += 1;
                levels.push(Level::default());
            }
            b')' | b']' | b'}' if level > 0 => {
                if let Some(closed) = levels.pop() {
                    let group = &mut levels[level - 1];
                    group.deepest_group = group.deepest_group.max(closed.depth());
                }
            }
            b',' => {
                let element = &mut levels[level];
                element.deepest_element = element.depth();
                element.operators = 0;
                element.deepest_group = 0;
            }
            b'.' | b'|' | b'&' | b'!' | b'<' | b'>' | b'=' | b'?' | b'*' => {
                levels[level].operators += 1;
            }
            _ => {}
        }
        previous = byte;
    }
    // Groups left open count as closed at the end.
    while levels.len() > 1 {
        if let Some(closed) = levels.pop() {
            let last = levels.len() - 1;
            levels[last].deepest_group = levels[last].deepest_group.max(closed.depth());
        }
    }
    levels[0].depth()
}

/// The most times an expression may copy one part of the data it searches, in its result or
/// while it runs (see [`Footprint`]). Real expressions copy each part once (`[a, b.c]`,
/// `Records[*].powertools_json(body)`), or twice (`{raw: @, id: id}`); each `[@, @]` piped into
/// another doubles it, and 32 of them fit in [`MAX_EXPRESSION_OPERATORS`].
const MAX_REPETITION: u64 = 16;

/// The most parts a [`Footprint`] tells apart; past it they are merged into one part at the
/// data's root (counts added: never fewer), so that an expression of thousands of fields is
/// checked in bounded time.
const MAX_FOOTPRINT_PARTS: usize = 1024;

/// A step of a path into the data: a field, or an element of an array (indexes, negative ones
/// included, and a projection's elements are not told apart: they may be the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Field(&'a str),
    Element,
}

/// What an expression's result holds of its input, as an upper bound: the parts of the input
/// it copies (each a path, and how many times), so that a part and a part inside it add up,
/// and two parts side by side (`[a, b]`) do not. The `jmespath` interpreter shares values while
/// it runs (`[@, @]` holds the input twice for the price of two pointers), but what walks them
/// copies each: the result's conversion, `to_string`, comparisons, a flatten. Unlike the
/// operator count, this bounds work that doubles at each of a few operators.
#[derive(Debug)]
struct Footprint<'a> {
    parts: Vec<(Vec<Step<'a>>, u64)>,
    /// The result is the input's value at the one part's path (fields and indexes only), so
    /// that what follows it continues the path rather than copying the part again.
    is_path: bool,
    /// The most copies of one part of the input any value built while evaluating holds, the
    /// result included (see [`Footprint::repetition`]).
    worst: u64,
}

impl<'a> Footprint<'a> {
    fn path(steps: Vec<Step<'a>>) -> Self {
        Self {
            parts: vec![(steps, 1)],
            is_path: true,
            worst: 1,
        }
    }

    /// A value built from `parts` (an array, an object, a function's result).
    fn built(parts: Vec<(Vec<Step<'a>>, u64)>, worst: u64) -> Self {
        let mut built = Self {
            parts,
            is_path: false,
            worst,
        };
        if built.parts.len() > MAX_FOOTPRINT_PARTS {
            let copies = built
                .parts
                .iter()
                .fold(0_u64, |sum, (_, count)| sum.saturating_add(*count));
            built.parts = vec![(Vec::new(), copies)];
        }
        built.worst = built.worst.max(built.repetition());
        built
    }

    /// Every part of `children` (each copied once), and the worst of their evaluations.
    fn union(children: impl IntoIterator<Item = Self>) -> Self {
        let mut parts = Vec::new();
        let mut worst = 0;
        for child in children {
            worst = worst.max(child.worst);
            parts.extend(child.parts);
        }
        Self::built(parts, worst)
    }

    /// The result of `a || b` or `a && b`: one or the other, so each part as many times as the
    /// one that copies it more.
    fn either(a: Self, b: Self) -> Self {
        /// The parts with the copies of each path added up (`[@, @]` copies `@` twice).
        fn summed(parts: Vec<(Vec<Step<'_>>, u64)>) -> Vec<(Vec<Step<'_>>, u64)> {
            let mut summed: Vec<(Vec<Step<'_>>, u64)> = Vec::new();
            for (steps, count) in parts {
                match summed.iter_mut().find(|(known, _)| *known == steps) {
                    Some((_, known)) => *known = known.saturating_add(count),
                    None => summed.push((steps, count)),
                }
            }
            summed
        }
        let worst = a.worst.max(b.worst);
        // Within one side copies add up; between the two, the result is one side's (a review
        // found `@ && [@,@]` counted once, by taking the larger of `[@,@]`'s own two).
        let mut parts = summed(a.parts);
        for (steps, count) in summed(b.parts) {
            match parts.iter_mut().find(|(known, _)| *known == steps) {
                Some((_, known)) => *known = (*known).max(count),
                None => parts.push((steps, count)),
            }
        }
        Self::built(parts, worst)
    }

    /// A small value of the expression's own (a literal, a comparison's `true`), counted as a
    /// copy of the whole input: piped into `[@, @]` stages or made for each element of an
    /// array, it multiplies as the data would (an attack built gigabytes from `` `"x"` `` and
    /// from `!a`, counted as nothing).
    fn constant(worst: u64) -> Self {
        Self::built(vec![(Vec::new(), 1)], worst.max(1))
    }

    /// A value computed from `inputs` that holds none of them (a comparison's `true`), but walks
    /// each (comparing them).
    fn walked(inputs: impl IntoIterator<Item = Self>) -> Self {
        let walked = Self::union(inputs);
        Self::constant(walked.worst)
    }

    /// The most copies of one part of the input the result holds: for each part, the copies of
    /// the parts that hold it (itself included, paths that are its prefixes).
    fn repetition(&self) -> u64 {
        fn holds(outer: &[Step<'_>], inner: &[Step<'_>]) -> bool {
            outer.len() <= inner.len() && outer.iter().zip(inner).all(|(a, b)| a == b)
        }
        self.parts
            .iter()
            .map(|(inner, _)| {
                self.parts
                    .iter()
                    .filter(|(outer, _)| holds(outer, inner))
                    .fold(0_u64, |sum, (_, count)| sum.saturating_add(*count))
            })
            .max()
            .unwrap_or(0)
    }

    /// `next` evaluated on this footprint's result (`a.b`, `a | b`), or on each of its elements
    /// (`a[*].b`, a projection).
    fn then(self, next: Self, projection: bool) -> Self {
        if self.is_path {
            if let [(prefix, 1)] = self.parts.as_slice() {
                let mut prefix = prefix.clone();
                if projection {
                    prefix.push(Step::Element);
                }
                let parts = next
                    .parts
                    .into_iter()
                    .map(|(steps, count)| {
                        let mut path = prefix.clone();
                        path.extend(steps);
                        (path, count)
                    })
                    .collect();
                let is_path = next.is_path && !projection;
                let worst = self.worst.max(next.worst);
                let mut continued = Self::built(parts, worst);
                continued.is_path = is_path;
                return continued;
            }
        }
        // Built data: `next` may copy each of its parts as often as it copies its input.
        let factor = next.repetition().max(1);
        let worst = self.worst.max(self.repetition().saturating_mul(next.worst));
        let parts = self
            .parts
            .into_iter()
            .map(|(steps, count)| (steps, count.saturating_mul(factor)))
            .collect();
        Self::built(parts, worst)
    }

    /// The footprint of `ast` on its input. Recursive: the operator limit, checked before the
    /// expression is compiled, bounds the depth.
    fn of(ast: &'a Ast) -> Self {
        match ast {
            Ast::Identity { .. } => Self::path(Vec::new()),
            Ast::Field { name, .. } => Self::path(vec![Step::Field(name)]),
            Ast::Index { .. } => Self::path(vec![Step::Element]),
            // A new array of the input's elements.
            Ast::Slice { .. } => Self::built(vec![(Vec::new(), 1)], 1),
            Ast::Literal { .. } => Self::constant(1),
            Ast::Subexpr { lhs, rhs, .. } => Self::of(lhs).then(Self::of(rhs), false),
            Ast::Projection { lhs, rhs, .. } => Self::of(lhs).then(Self::of(rhs), true),
            Ast::Flatten { node, .. }
            | Ast::ObjectValues { node, .. }
            | Ast::Expref { ast: node, .. } => Self::union([Self::of(node)]),
            Ast::Not { node, .. } => Self::walked([Self::of(node)]),
            Ast::Comparison { lhs, rhs, .. } => Self::walked([Self::of(lhs), Self::of(rhs)]),
            Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
                Self::either(Self::of(lhs), Self::of(rhs))
            }
            // `then` where `predicate` holds, evaluated first.
            Ast::Condition {
                predicate, then, ..
            } => {
                let predicate = Self::of(predicate);
                let mut then = Self::of(then);
                then.worst = then.worst.max(predicate.worst);
                then
            }
            Ast::MultiList { elements, .. } => Self::union(elements.iter().map(Self::of)),
            Ast::MultiHash { elements, .. } => {
                Self::union(elements.iter().map(|pair| Self::of(&pair.value)))
            }
            Ast::Function { args, .. } => {
                // An expression argument (`sort_by(a, &b)`, `map(&b, a)`) runs on each element
                // of the others: it multiplies what they hold.
                let (expressions, values): (Vec<&Ast>, Vec<&Ast>) = args
                    .iter()
                    .partition(|arg| matches!(arg, Ast::Expref { .. }));
                expressions.into_iter().fold(
                    Self::union(values.into_iter().map(Self::of)),
                    |found, expression| found.then(Self::of(expression), true),
                )
            }
        }
    }
}

/// A function of one argument of type `argument`, computed by `compute`; its error message is
/// the search's.
fn function_of_one(
    argument: ArgumentType,
    compute: impl Fn(&Variable) -> Result<Variable, String> + Send + Sync + 'static,
) -> Box<dyn Function> {
    Box::new(CustomFunction::new(
        Signature::new(vec![argument], None),
        Box::new(move |args: &[Rcvar], ctx: &mut Context<'_>| {
            // The signature has checked that there is exactly one argument of that type.
            let argument = args.first().ok_or_else(|| {
                JmespathError::from_ctx(ctx, ErrorReason::Parse("expected an argument".to_owned()))
            })?;
            compute(argument)
                .map(Rcvar::new)
                .map_err(|message| JmespathError::from_ctx(ctx, ErrorReason::Parse(message)))
        }),
    ))
}

/// `number` as an exact integer, when it is one.
fn integer_of(number: &serde_json::Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// An exact integer as a JSON number, refused beyond 64 bits rather than rounded to a float.
fn exact_integer(value: i128, function: &str) -> Result<Variable, String> {
    if let Ok(value) = i64::try_from(value) {
        Ok(Variable::Number(value.into()))
    } else if let Ok(value) = u64::try_from(value) {
        Ok(Variable::Number(value.into()))
    } else {
        Err(format!(
            "{function}: the integer is beyond 64 bits, which would be rounded to a float here \
             (Python keeps it exact): send such numbers as strings"
        ))
    }
}

fn float_number(value: f64, function: &str) -> Result<Variable, String> {
    serde_json::Number::from_f64(value)
        .map(Variable::Number)
        .ok_or_else(|| format!("{function}: the result is beyond what JSON numbers hold"))
}

/// An array of numbers, the argument of `sum` and `avg`.
fn numbers() -> ArgumentType {
    ArgumentType::TypedArray(Box::new(ArgumentType::Number))
}

/// A running total as Python's `sum` keeps it: integers add exactly until a float comes, then
/// the total is a float.
#[derive(Clone, Copy)]
enum Total {
    Integer(i128),
    Float(f64),
}

/// The total of an array of numbers, left to right as Python adds them, and how many there are.
#[allow(clippy::cast_precision_loss)] // int + float is a float, rounded, as in Python
fn python_total(array: &Variable) -> (Total, usize) {
    let Some(items) = array.as_array() else {
        return (Total::Integer(0), 0);
    };
    let mut total = Total::Integer(0);
    for item in items {
        let Variable::Number(number) = item.as_ref() else {
            continue;
        };
        let float = || number.as_f64().unwrap_or_default();
        total = match (total, integer_of(number)) {
            (Total::Integer(sum), Some(value)) => Total::Integer(sum.saturating_add(value)),
            (Total::Integer(sum), None) => Total::Float(sum as f64 + float()),
            (Total::Float(sum), Some(value)) => Total::Float(sum + value as f64),
            (Total::Float(sum), None) => Total::Float(sum + float()),
        };
    }
    (total, items.len())
}

/// `sum`: exact while every number is an integer (Python's `int`), else a float.
fn sum(array: &Variable) -> Result<Variable, String> {
    match python_total(array).0 {
        Total::Integer(total) => exact_integer(total, "sum"),
        Total::Float(total) => float_number(total, "sum"),
    }
}

/// `avg`: the total divided by the count (a float, as Python's `/`), null for an empty array as
/// the specification says (`jmespath`'s own failed: "Expected to be a valid f64").
fn average(array: &Variable) -> Result<Variable, String> {
    let (total, count) = python_total(array);
    if count == 0 {
        return Ok(Variable::Null);
    }
    #[allow(clippy::cast_precision_loss)] // a count far below 2^53; a float total as Python's
    let mean = match total {
        Total::Integer(total) => integer_ratio(total, count),
        Total::Float(total) => total / count as f64,
    };
    float_number(mean, "avg")
}

/// `total / count` rounded once to the nearest `f64` (ties to even), as Python's `int / int` is:
/// rounding the total to a float first, then dividing, rounds twice (`avg([2^53 + 1, 0, 0])`
/// was `3002399751580330.5`, Python's `3002399751580331.0`).
#[allow(clippy::cast_precision_loss)] // each cast below is exact, or the one rounding
fn integer_ratio(total: i128, count: usize) -> f64 {
    const EXACT: u128 = 1 << 53;
    let (numerator, denominator) = (total.unsigned_abs(), count as u128);
    let magnitude = if numerator <= EXACT && denominator <= EXACT {
        // Both exact as floats: one IEEE division, correctly rounded.
        numerator as f64 / denominator as f64
    } else {
        // Scaled so that the quotient has at least 55 bits (the 53 kept, the rounding bit and
        // one below it), with a remainder folded into its last bit: the quotient then rounds
        // to a float as the exact ratio does. Scaled by at most 55 + 64 bits: no overflow.
        let wanted = 55 + (u128::BITS - denominator.leading_zeros());
        let shift = wanted.saturating_sub(u128::BITS - numerator.leading_zeros());
        let scaled = numerator << shift;
        let quotient = (scaled / denominator) | u128::from(scaled % denominator != 0);
        quotient as f64 / (1_u128 << shift) as f64
    };
    if total < 0 { -magnitude } else { magnitude }
}

fn abs(number: &Variable) -> Result<Variable, String> {
    let Variable::Number(number) = number else {
        return Ok(number.clone());
    };
    match integer_of(number) {
        Some(value) => exact_integer(value.abs(), "abs"),
        None => float_number(number.as_f64().unwrap_or_default().abs(), "abs"),
    }
}

/// `ceil` and `floor`: an integer stays as it is; a float is rounded to an integer, as Python's
/// `math.ceil` and `math.floor` give, or stays a float beyond 64 bits.
fn round(number: &Variable, rounding: fn(f64) -> f64) -> Result<Variable, String> {
    let Variable::Number(number) = number else {
        return Ok(number.clone());
    };
    if integer_of(number).is_some() {
        return Ok(Variable::Number(number.clone()));
    }
    let rounded = rounding(number.as_f64().unwrap_or_default());
    // 2^63 is exactly representable; below it (and from -2^63) the cast is exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&rounded) {
        #[allow(clippy::cast_possible_truncation)] // an integral value within i64's range
        return Ok(Variable::Number((rounded as i64).into()));
    }
    float_number(rounded, "ceil/floor")
}

/// `to_number`: a number as it is; a string that reads as a number (surrounding whitespace and a
/// sign allowed, as Python's `int` and `float` read it), with an integer kept exact; anything
/// else null.
fn to_number(value: &Variable) -> Result<Variable, String> {
    let text = match value {
        Variable::Number(_) => return Ok(value.clone()),
        Variable::String(text) => text.trim(),
        _ => return Ok(Variable::Null),
    };
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return match text.parse::<i128>() {
            Ok(value) => exact_integer(value, "to_number"),
            // More digits than even 128 bits hold.
            Err(_) => exact_integer(i128::MAX, "to_number"),
        };
    }
    // Rust's `f64` reads what Python's `float` reads but `inf`, `nan` (not JSON numbers: null
    // here) and `_` between digits (null here, a number in Python).
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => float_number(value, "to_number"),
        _ => Ok(Variable::Null),
    }
}

/// A function of one string, computed by `decode`.
fn string_function(decode: fn(&str) -> Result<Variable, String>) -> Box<dyn Function> {
    function_of_one(ArgumentType::String, move |value| match value.as_string() {
        Some(text) => decode(text),
        None => Err("expected a string".to_owned()),
    })
}

fn parse_json(text: &str) -> Result<Variable, String> {
    let mut minus_zeros = Vec::new();
    let values = count_json_values(text, &mut minus_zeros)?;
    let left = JSON_BUDGET.get();
    if values > left {
        return Err(format!(
            "{POWERTOOLS_JSON}: the text holds {values} JSON values, more than the {left} left of \
             the search's {MAX_JSON_VALUES} (parsed, each takes about 90 bytes of memory)"
        ));
    }
    JSON_BUDGET.set(left - values);
    // Read as a `Value`, then made the crate's data: read as its own `Variable`, a number of
    // an `arbitrary_precision` build was an object (see `variable_of`).
    let parsed = if minus_zeros.is_empty() {
        json_variable(text)
    } else {
        // `-0` is the integer 0 in Python's `json.loads` (an `int` has no sign of zero), where
        // serde_json reads the float `-0.0`: a key built on it would differ from Python's.
        // Its sign becomes a space, which leaves every other token where it was.
        let mut bytes = text.as_bytes().to_vec();
        for at in minus_zeros {
            bytes[at] = b' ';
        }
        json_variable(&String::from_utf8_lossy(&bytes))
    };
    parsed.map_err(|error| {
        format!(
            "{POWERTOOLS_JSON}: invalid JSON: {error}{}",
            python_reads_it(text, &error)
        )
    })
}

/// `text` read as JSON, as the `jmespath` crate's data; serde_json's error as text.
fn json_variable(text: &str) -> Result<Variable, String> {
    serde_json::from_str::<Value>(text)
        .map(variable_of)
        .map_err(|error| error.to_string())
}

/// The function a runtime error pointing at `offset` came from: the one whose call is there, or,
/// for an error about what an expression argument returned (`sort_by`'s keys), the function
/// that took that argument. The `jmespath` crate points at the last function it started, which
/// may be one inside that argument (a review found `max_by(@, &not_null(@))`'s error named
/// `not_null`).
fn failing_function<'e>(ast: &'e Ast, offset: usize, reason: &str) -> Option<&'e str> {
    /// The function called at `offset`, and the innermost function whose expression argument
    /// holds it (`taking`, as far as the walk knows).
    fn find<'e>(
        node: &'e Ast,
        offset: usize,
        taking: Option<&'e str>,
    ) -> Option<(&'e str, Option<&'e str>)> {
        match node {
            Ast::Function {
                name,
                args,
                offset: at,
            } => {
                if *at == offset {
                    return Some((name, taking));
                }
                args.iter().find_map(|arg| {
                    let taking = match arg {
                        Ast::Expref { .. } => Some(name.as_str()),
                        _ => taking,
                    };
                    find(arg, offset, taking)
                })
            }
            Ast::Comparison { lhs, rhs, .. }
            | Ast::Projection { lhs, rhs, .. }
            | Ast::And { lhs, rhs, .. }
            | Ast::Or { lhs, rhs, .. }
            | Ast::Subexpr { lhs, rhs, .. } => {
                find(lhs, offset, taking).or_else(|| find(rhs, offset, taking))
            }
            Ast::Condition {
                predicate, then, ..
            } => find(predicate, offset, taking).or_else(|| find(then, offset, taking)),
            Ast::Expref { ast: node, .. }
            | Ast::Flatten { node, .. }
            | Ast::Not { node, .. }
            | Ast::ObjectValues { node, .. } => find(node, offset, taking),
            Ast::MultiList { elements, .. } => elements
                .iter()
                .find_map(|element| find(element, offset, taking)),
            Ast::MultiHash { elements, .. } => elements
                .iter()
                .find_map(|pair| find(&pair.value, offset, taking)),
            Ast::Identity { .. }
            | Ast::Field { .. }
            | Ast::Index { .. }
            | Ast::Literal { .. }
            | Ast::Slice { .. } => None,
        }
    }
    match find(ast, offset, None)? {
        (_, Some(taking)) if reason.contains("must return expression") => Some(taking),
        (called, _) => Some(called),
    }
}

/// What to add to serde_json's message when `text` holds what Python's `json.loads` reads and
/// JSON does not, which serde_json's words do not name (`expected value` for `NaN`, `unexpected
/// end of hex escape` for `"\ud800"`).
fn python_reads_it(text: &str, error: &str) -> &'static str {
    if error.contains("surrogate") || error.contains("hex escape") {
        return " (a lone surrogate escape, such as `\\ud800` alone, is not Unicode text; \
                 Python's json.loads reads it)";
    }
    // The token where serde_json stopped: `… at line L column C`, C counted in bytes from 1.
    let stopped_at = error
        .rsplit_once(" at line ")
        .and_then(|(_, at)| at.split_once(" column "))
        .and_then(|(line, column)| {
            Some((line.parse::<usize>().ok()?, column.parse::<usize>().ok()?))
        })
        .and_then(|(line, column)| {
            text.split('\n')
                .nth(line.checked_sub(1)?)?
                .get(column.checked_sub(1)?..)
        });
    match stopped_at {
        Some(rest)
            if ["NaN", "Infinity", "-Infinity"]
                .iter()
                .any(|token| rest.starts_with(token)) =>
        {
            " (`NaN` and `Infinity` are not JSON numbers; Python's json.loads reads them)"
        }
        _ => "",
    }
}

/// How many values `text` holds (strings, object keys included, numbers, literals, arrays and
/// objects), counted in one pass without parsing; refuses an integer beyond 64 bits, which
/// `serde_json` would round to a float (`100000000000000000000001` and `…002` both `1e23`: two
/// orders, one idempotency key). Invalid JSON is left to the parser to describe.
///
/// Notes in `minus_zeros` where each integer literal `-0` starts (see [`parse_json`]).
fn count_json_values(text: &str, minus_zeros: &mut Vec<usize>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let (mut values, mut index) = (0_usize, 0_usize);
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => {
                values += 1;
                index += 1;
                while let Some(&inner) = bytes.get(index) {
                    index += 1;
                    match inner {
                        b'\\' => index += 1,
                        b'"' => break,
                        _ => {}
                    }
                }
                continue;
            }
            b'-' | b'0'..=b'9' => {
                values += 1;
                let start = index;
                while bytes
                    .get(index)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    index += 1;
                }
                let number = &text[start..index];
                check_integer(number)?;
                if number == "-0" {
                    minus_zeros.push(start);
                }
                continue;
            }
            b'[' | b'{' | b't' | b'f' | b'n' => values += 1,
            _ => {}
        }
        index += 1;
    }
    Ok(values)
}

/// Refuses an integer literal that does not fit 64 bits (`u64` or `i64`).
fn check_integer(number: &str) -> Result<(), String> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, number),
    };
    // Floats, and tokens that are not JSON numbers (left to the parser to describe).
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(());
    }
    let fits = digits
        .parse::<u64>()
        .is_ok_and(|magnitude| !negative || magnitude <= 1 << 63);
    if fits {
        return Ok(());
    }
    Err(format!(
        "{POWERTOOLS_JSON}: an integer of {} digits, beyond 64 bits: it would be rounded to a \
         float, and different values would compare equal (send it as a string)",
        digits.len()
    ))
}

fn decode_base64(text: &str) -> Result<Variable, String> {
    let bytes = base64_bytes("powertools_base64", text)?;
    utf8("powertools_base64", bytes)
}

fn decode_base64_gzip(text: &str) -> Result<Variable, String> {
    let compressed = base64_bytes(BASE64_GZIP, text)?;
    let budget = GZIP_BUDGET.get();
    let mut bytes = Vec::new();
    // Every member, as Python's `gzip.decompress`: zero bytes between and after members are
    // padding (Python strips them), anything else after a member must be another member; the
    // data must begin with a member (zeros first are not a gzip file, as in Python).
    let mut rest = compressed.as_slice();
    let mut fits = true;
    let mut first = true;
    loop {
        let after_a_member = !first;
        let mut padded = false;
        if after_a_member {
            let padding = rest.iter().take_while(|&&byte| byte == 0).count();
            padded = padding > 0;
            rest = &rest[padding..];
        }
        first = false;
        if rest.is_empty() {
            break;
        }
        // Not gzip at all (plain text, zlib): named so, as Python's `Not a gzipped file`,
        // rather than as the end of a gzip file that came too soon.
        if !rest.starts_with(&GZIP_MAGIC) {
            let start: Vec<String> = rest.iter().take(2).map(|b| format!("{b:02x}")).collect();
            let start = start.join(" ");
            // After a member, what follows is named, not the data, which starts as gzip does.
            return Err(if after_a_member {
                let padding = if padded {
                    " (and its zero padding)"
                } else {
                    ""
                };
                match rest {
                    [byte] => format!(
                        "{BASE64_GZIP}: invalid gzip data: the byte {byte:02x} after the end of \
                         the gzip data{padding} is not gzip (gzip starts with 1f 8b)"
                    ),
                    _ => format!(
                        "{BASE64_GZIP}: invalid gzip data: the {} bytes after the end of the \
                         gzip data{padding} are not gzip (they start with the bytes {start}, \
                         where gzip starts with 1f 8b)",
                        rest.len()
                    ),
                }
            } else {
                format!(
                    "{BASE64_GZIP}: invalid gzip data: not gzip data (it starts with the bytes \
                     {start}, where gzip starts with 1f 8b)"
                )
            });
        }
        // The slice is its own buffer: no copy through a `BufReader`; the decoder stops at the
        // member's end and gives back what follows.
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let mut decoded = Vec::new();
        fits = read_at_most(
            &mut member,
            budget.remaining.saturating_sub(bytes.len()),
            &mut decoded,
        )
        .map_err(|error| format!("{BASE64_GZIP}: invalid gzip data: {error}"))?;
        if bytes.is_empty() {
            bytes = decoded;
        } else {
            bytes.extend_from_slice(&decoded);
        }
        if !fits {
            break;
        }
        rest = member.into_inner();
    }
    if !fits {
        GZIP_BUDGET.set(GzipBudget {
            exceeded: true,
            ..budget
        });
        // `JmesPath::search` turns this into `Error::DecompressedSizeExceeded`.
        return Err(format!(
            "{BASE64_GZIP}: the decompressed data exceeds the {} bytes left of the search's limit",
            budget.remaining
        ));
    }
    GZIP_BUDGET.set(GzipBudget {
        remaining: budget.remaining - bytes.len(),
        ..budget
    });
    utf8(BASE64_GZIP, bytes)
}

/// Reads `reader` to its end into `out` (empty) and returns `true`, or returns `false` as soon
/// as it has produced more than `limit` bytes. Reads at most `limit + 1` bytes, and `out` never
/// grows past that: a gzip bomb is refused at the cost of the limit, not of its size.
fn read_at_most(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> io::Result<bool> {
    let max = limit.saturating_add(1);
    let mut reader = reader.take(u64::try_from(max).unwrap_or(u64::MAX));
    let mut chunk = [0_u8; 8 * 1024];
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let needed = out.len() + read;
        if needed > out.capacity() {
            // Amortized doubling, like `Vec`'s own, but never past `max`, which `take` keeps
            // `needed` under.
            let target = out
                .capacity()
                .saturating_mul(2)
                .clamp(needed, max.max(needed));
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..read]);
    }
    Ok(out.len() <= limit)
}

fn base64_bytes(function: &str, text: &str) -> Result<Vec<u8>, String> {
    // The canonical form, the common case, through the `base64` crate; anything else as Python's
    // `base64.b64decode` reads it.
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| python_b64decode(text))
        .map_err(|reason| format!("{function}: invalid base64: {reason}"))
}

/// Python's `base64.b64decode(text)` (CPython's `binascii.a2b_base64`, not strict): ASCII only;
/// characters outside the alphabet are left out (line breaks); a complete padding ends the
/// data; `=` before that, and the unused bits of the last character, are ignored; a data
/// length that padding cannot complete is an error.
fn python_b64decode(text: &str) -> Result<Vec<u8>, String> {
    if !text.is_ascii() {
        return Err("not ASCII (Python refuses it too)".to_owned());
    }
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let (mut quad_position, mut left, mut pads) = (0_u8, 0_u8, 0_u8);
    for byte in text.bytes() {
        if byte == b'=' {
            pads = pads.saturating_add(1);
            if quad_position >= 2 && quad_position + pads >= 4 {
                return Ok(bytes);
            }
            continue;
        }
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        pads = 0;
        match quad_position {
            0 => left = value,
            1 => {
                bytes.push((left << 2) | (value >> 4));
                left = value & 0x0f;
            }
            2 => {
                bytes.push((left << 4) | (value >> 2));
                left = value & 0x03;
            }
            _ => bytes.push((left << 6) | value),
        }
        quad_position = (quad_position + 1) % 4;
    }
    match quad_position {
        0 => Ok(bytes),
        1 => Err("one data character more than a multiple of 4".to_owned()),
        _ => Err("incorrect padding".to_owned()),
    }
}

fn utf8(function: &str, bytes: Vec<u8>) -> Result<Variable, String> {
    String::from_utf8(bytes)
        .map(Variable::String)
        .map_err(|error| format!("{function}: the decoded bytes are not UTF-8: {error}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn gzip_base64(text: &str) -> String {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
    }

    /// `[@,@] | [@,@] | …` doubles what a search builds at each stage, within the operator
    /// limit: 22 stages on a 1 KiB event ran out of memory and aborted the process (found by an
    /// attack). Refused when compiled, with the copies counted; so is a flatten's doubling piped
    /// into a literal, a function's, and an expression argument's.
    #[test]
    fn an_expression_that_copies_the_data_exponentially_is_refused_when_compiled() {
        let stages = |count: usize| vec!["[@,@]"; count].join(" | ");
        let refused = |expression: &str, copies: &str| {
            let error = JmesPath::new(expression).expect_err(expression);
            let message = error.to_string();
            assert!(
                matches!(error, Error::InvalidJmesPath { .. })
                    && message.contains(&format!("copy one part of the data {copies} times"))
                    && message.contains("at most 16"),
                "{expression}: {message}"
            );
        };
        let four = JmesPath::new(&stages(4)).unwrap();
        assert_eq!(
            serde_json::to_string(&four.search(&json!(1)).unwrap())
                .unwrap()
                .matches('1')
                .count(),
            16
        );
        refused(&stages(5), "32");
        refused(&stages(32), "4294967296");
        refused(&format!("{} | `1`", ["[@,@][]"; 5].join(" | ")), "32");
        refused(&format!("to_string({})", stages(5)), "32");
        refused(&format!("length({}) == `1`", stages(5)), "33");
        // Found by an attack on the first version of the check: a side of `&&` counted its
        // own copies once, and a literal or a comparison counted as no data at all.
        refused(&["@ && [@,@]"; 5].join(" | "), "32");
        refused(&format!("`\"x\"` | {}", stages(5)), "32");
        refused(&format!("!a | {}", stages(5)), "32");
        refused(&format!("a || {}", stages(5)), "48");
        refused(&format!("Records[?{} == `1`].id", stages(5)), "48");
        refused("map(&[@,@,@,@], [@,@,@,@,@])", "20");
        refused("sort_by([@,@,@,@,@], &to_string([@,@,@,@]))", "20");
        refused("a.[b, b, b, b, b] | [@, @, @, @]", "20");
        refused(
            "{x: @, y: @, z: [a, a, a, a, a, a, a, a, a, a, a, a, a, a, a]}",
            "17",
        );
    }

    /// What the copies counted when compiled cannot see is bounded while searching: the text
    /// `to_string` and `join` build, and the result as JSON would take it (each found by an
    /// attack: gigabytes from a few operators, or an abort); and a slice step the `jmespath`
    /// crate's index arithmetic overflows on (a panic) is refused when compiled.
    #[test]
    fn what_a_search_builds_is_bounded() {
        let over = |expression: &str, event: Value, what: &str| {
            let error = JmesPath::new(expression)
                .unwrap()
                .search(&event)
                .expect_err(expression)
                .to_string();
            assert!(
                error.contains(what) && error.contains("max_result_bytes"),
                "{expression}: {error}"
            );
        };
        // Each level escapes the quotes of the one inside: 2^27 bytes at 27 levels.
        let nested = (0..27).fold("@".to_owned(), |inner, _| format!("to_string([{inner}])"));
        over(&nested, json!({}), "to_string: its text would be more than");
        // A 1,000-byte separator between 100,000 empty strings.
        over(
            "join(separator, items)",
            json!({"separator": "-".repeat(1000), "items": vec![""; 100_000]}),
            "join: its text would be 99999000 bytes",
        );
        // A 1,000-byte literal for each of 70,000 elements: one shared value while searching.
        over(
            &format!("items[*].[`\"{}\"`]", "x".repeat(1_000)),
            json!({"items": vec![0; 70_000]}),
            "the result would take more than 67108864 bytes",
        );
        // Each value counted as at least what it takes in memory: 40,000 elements of 62 empty
        // arrays are 7 MB of text but 80 MB as values (a third attack passed 64 MiB this way).
        over(
            &format!("items[*].not_null(`[{}]`)", vec!["[]"; 61].join(",")),
            json!({"items": vec![0; 40_000]}),
            "the result would take more than 67108864 bytes",
        );
        // Within the budget, as before.
        let joined = JmesPath::new("join(', ', names)")
            .unwrap()
            .search(&json!({"names": ["a", "b"]}))
            .unwrap();
        assert_eq!(joined, json!("a, b"));
        let text = JmesPath::new("to_string(order)")
            .unwrap()
            .search(&json!({"order": {"id": "o-1", "total": 3}}))
            .unwrap();
        assert_eq!(text, json!(r#"{"id":"o-1","total":3}"#));
        assert_eq!(
            JmesPath::new("to_string(id)")
                .unwrap()
                .search(&json!({"id": "o-1"}))
                .unwrap(),
            json!("o-1")
        );
        // The step the `jmespath` crate adds to an `i32` index.
        let error = JmesPath::new("a[1::2147483647]").unwrap_err().to_string();
        assert!(error.contains("slice step of 2147483647"), "{error}");
        let stepped = JmesPath::new("a[1::1073741824]")
            .unwrap()
            .search(&json!({"a": [1, 2, 3]}))
            .unwrap();
        assert_eq!(stepped, json!([2]));
    }

    /// What an expression evaluates for each element it projects over is bounded when it is
    /// compiled; an expression reference is a function's argument only; and a Powertools
    /// function hidden behind a quoted, escaped name still gets the search's budget (each
    /// found by an attack: an object nested 56 levels or 200 keys wide per element, a literal
    /// of 2,000 values per element, ran a 1 MiB event out of memory; a thousand arguments per
    /// element took 18 s; `[*].&{…}` built past the result bound; the hidden name spent a
    /// budget that was never reset).
    #[test]
    fn what_an_expression_does_per_element_is_bounded_when_compiled() {
        let refused = |expression: &str, what: &str| {
            let error = JmesPath::new(expression).expect_err(expression).to_string();
            assert!(error.contains(what), "{expression}: {error}");
        };
        let nested = (0..56).fold("@".to_owned(), |inner, _| format!("{{a: {inner}}}"));
        refused(
            &format!("length([*].{nested})"),
            "for each element it projects over",
        );
        let wide = (0..200)
            .map(|key| format!("k{key}: f{key}"))
            .collect::<Vec<_>>()
            .join(", ");
        refused(
            &format!("[*].{{{wide}}}"),
            "for each element it projects over",
        );
        refused(
            &format!("[?!{{{wide}}}]"),
            "for each element it projects over",
        );
        let arguments = (0..1000)
            .map(|field| format!("f{field}"))
            .collect::<Vec<_>>()
            .join(", ");
        refused(
            &format!("[*].not_null({arguments})"),
            "for each element it projects over",
        );
        refused(
            &format!("[*].[`[{}]`][] | []", vec!["0"; 2000].join(",")),
            "for each element it projects over",
        );
        refused(
            &format!("sort_by(@, &{{{wide}}})"),
            "for each element it projects over",
        );
        refused("[*].&a", "an expression reference");
        refused(
            &format!("items[*].not_null(&'{}')", "k".repeat(100)),
            "an expression reference",
        );
        refused("to_array(&a)", "an expression reference");
        // Sixteen one-key objects per element (a sixth attack: 1.2 GB from a 917 KB event).
        refused(
            &format!("length(a[*].[{}])", vec!["{x: @}"; 16].join(", ")),
            "for each element it projects over",
        );
        // A long key is copied for each element (a fifth attack).
        refused(
            &format!("items[*].{{\"{}\": @}}", "k".repeat(4096)),
            "for each element it projects over",
        );
        // What a projection over a literal decodes for each of its elements is data.
        refused(
            &format!(
                "`[0]`[*].powertools_json('[0]')[].to_array(`[{}]`)[*].{{a: @, b: @, c: @, d: @, \
                 e: @, f: @, g: @, h: @}}",
                (0..100)
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "for each element it projects over",
        );
        // Projections over the expression's own literal multiply (a third attack: 61^4 arrays
        // from a 61-value literal, out of memory; 61^5 length calls, seconds of CPU each level).
        let literal = format!("`[{}]`", vec!["0"; 61].join(","));
        let over_literal = |stage: &str| format!("{literal}[*]{}", stage.repeat(4));
        refused(
            &over_literal(&format!(".not_null({literal})[*]")),
            "in one search",
        );
        let lengths = (0..4).fold(format!("{literal}[*]"), |inner, _| {
            format!("{literal}[*].length({inner})")
        });
        refused(&lengths, "in one search");
        refused(
            &format!("Records[*].not_null({literal})[*].not_null({literal})[*]"),
            "for each element it projects over",
        );
        // What `powertools_json` decodes from a literal is data (a fourth attack: counted as two
        // values, 500,000 parsed ones projected over without a bound); so is what `map` returns
        // for each element (counted as its array alone).
        let fields = (0..100)
            .map(|field| format!("f{field}"))
            .collect::<Vec<_>>()
            .join(", ");
        let zeros = vec!["0"; 100].join(",");
        refused(
            &format!("powertools_json('[{zeros}]')[*].[{fields}]"),
            "for each element it projects over",
        );
        refused(
            &format!(
                "map(&`[{}]`, `[1,2,3,4,5]`)[].[{fields}]",
                vec!["0"; 15_000].join(",")
            ),
            "in one search",
        );
        refused("&a", "an expression reference");
        // A projection of real size.
        let six = JmesPath::new(
            "Records[*].{id: messageId, order: powertools_json(body).{id: id, total: total, \
             lines: lines[*].[sku, quantity]}}",
        );
        assert!(six.is_ok(), "{six:?}");

        // A hidden `powertools_json` gets the budget of each search, as a visible one does.
        let hidden = JmesPath::new(r#"length(("powertools_\u006Ason")(body))"#).unwrap();
        let body = format!("[{}]", vec!["0"; 300_000].join(","));
        for _ in 0..3 {
            assert_eq!(
                hidden.search(&json!({ "body": body })).unwrap(),
                json!(300_000)
            );
        }
    }

    /// A backtick literal that is not JSON is a string, as Python's `jmespath` reads it: the
    /// form of AWS CLI examples and older expressions, which the `jmespath` crate refused
    /// (found by a helper porting real expressions).
    #[test]
    fn a_legacy_backtick_literal_is_read_as_a_string_as_python_reads_it() {
        let stream = json!({"Records": [
            {"eventName": "INSERT", "dynamodb": {"NewImage": {"Message": {"S": "New item!"}}}},
            {"eventName": "MODIFY", "dynamodb": {"NewImage": {"Message": {"S": "Changed"}}}},
        ]});
        for (expression, event, found) in [
            (
                "Records[?eventName == `INSERT`].dynamodb.NewImage.Message.S",
                &stream,
                json!(["New item!"]),
            ),
            (
                "machines[?state == `running`].name",
                &json!({"machines": [{"name": "a", "state": "running"}, {"name": "b", "state": "stopped"}]}),
                json!(["a"]),
            ),
            (
                "myarray[?contains(@, `foo`)]",
                &json!({"myarray": ["foo", "bar", "food"]}),
                json!(["foo", "food"]),
            ),
            // A backtick inside, escaped, and JSON escapes, as Python reads them.
            (
                r"[`a\`b`, `tab\there`, ` spaced`]",
                &json!({}),
                json!(["a`b", "tab\there", "spaced"]),
            ),
            // JSON literals are as they were.
            (
                "[`1`, `\"x\"`, `[1, 2]`, `{\"a\": true}`]",
                &json!({}),
                json!([1, "x", [1, 2], {"a": true}]),
            ),
        ] {
            let path =
                JmesPath::new(expression).unwrap_or_else(|error| panic!("{expression}: {error}"));
            assert_eq!(path.search(event).unwrap(), found, "{expression}");
            assert_eq!(path.as_str(), expression);
        }
        // JSON nested deeper than serde_json builds stays a JSON literal, refused when compiled
        // as before (a review: it was made a string, 400 characters long).
        let deep = format!("length(`{}1{}`)", "[".repeat(200), "]".repeat(200));
        assert!(JmesPath::new(&deep).is_err());
        // Python's `lstrip` takes the separators `\x1c` to `\x1f` too.
        assert_eq!(
            JmesPath::new("`\u{1c} foo`")
                .unwrap()
                .search(&json!({}))
                .unwrap(),
            json!("foo")
        );
        // Backticks inside quoted parts are not literals.
        let quoted = JmesPath::new(r#""a`b" || 'c`d'"#).unwrap();
        assert_eq!(quoted.search(&json!({"a`b": 1})).unwrap(), json!(1));
    }

    /// What real expressions copy: each part once, or a part and one inside it.
    #[test]
    fn real_expressions_copy_each_part_once_or_twice() {
        let wide = format!(
            "{{{}}}",
            (0..300)
                .map(|field| format!("f{field}: f{field}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for expression in [
            envelopes::API_GATEWAY_REST,
            envelopes::SQS,
            envelopes::SNS,
            envelopes::KINESIS_DATA_STREAM,
            envelopes::CLOUDWATCH_LOGS,
            envelopes::S3_SNS_SQS,
            envelopes::S3_SNS_KINESIS_FIREHOSE,
            envelopes::S3_KINESIS_FIREHOSE,
            envelopes::S3_EVENTBRIDGE_SQS,
            r#"[headers."idempotency-key", powertools_json(body).customer_id]"#,
            "Records[*].{id: messageId, order: powertools_json(body).{id: id, total: total}}",
            "{raw: @, id: id}",
            "sort_by(Records, &attributes.SentTimestamp)[*].messageId",
            "map(&[id, total], orders)",
            "Records[?eventName == 'INSERT'].dynamodb.NewImage.[id.S, total.N]",
            "a || a || a || a || a || a || a || a || a || a || a || a || a || a || a || a || a",
            "[a, b] == [a, b] && [a, b] == [a, b] && [a, b] == [a, b] && !([a, b] == [a, b])",
            "[order.id, order.customer, order.items[*].sku, order.items[0]]",
            &wide,
        ] {
            let compiled = JmesPath::new(expression);
            assert!(compiled.is_ok(), "{expression}: {:?}", compiled.err());
        }
    }

    #[test]
    fn a_path_into_a_json_body_ignores_the_clients_whitespace() {
        let key = JmesPath::new("powertools_json(body).order_id").unwrap();
        let compact = json!({"body": r#"{"order_id":"o-1","total":3}"#});
        let spaced = json!({"body": "{ \"total\": 3,\n  \"order_id\": \"o-1\" }"});
        assert_eq!(key.search(&compact).unwrap(), json!("o-1"));
        assert_eq!(key.search(&spaced).unwrap(), key.search(&compact).unwrap());
    }

    #[test]
    fn base64_and_base64_gzip_decode_to_text() {
        let event = json!({
            "plain": base64::engine::general_purpose::STANDARD.encode(r#"{"id": 7}"#),
            "zipped": gzip_base64(r#"{"logGroup": "/aws/lambda/orders"}"#),
        });
        let plain = JmesPath::new("powertools_json(powertools_base64(plain)).id").unwrap();
        let zipped =
            JmesPath::new("powertools_json(powertools_base64_gzip(zipped)).logGroup").unwrap();
        assert_eq!(plain.search(&event).unwrap(), json!(7));
        assert_eq!(zipped.search(&event).unwrap(), json!("/aws/lambda/orders"));
    }

    #[test]
    fn json_types_are_kept() {
        let key = JmesPath::new("[amount, paid, note, items]").unwrap();
        let event = json!({"amount": 12.5, "paid": false, "note": null, "items": [0, "x"]});
        assert_eq!(
            key.search(&event).unwrap(),
            json!([12.5, false, null, [0, "x"]])
        );
    }

    #[test]
    fn standard_functions_are_available() {
        let key = JmesPath::new("join('-', sort(keys(@)))").unwrap();
        assert_eq!(key.search(&json!({"b": 1, "a": 2})).unwrap(), json!("a-b"));
    }

    #[test]
    fn typed_events_are_searched_through_serde() {
        #[derive(Serialize)]
        struct Order {
            order_id: String,
            quantity: u32,
        }
        let key = JmesPath::new("order_id").unwrap();
        let order = Order {
            order_id: "o-9".to_owned(),
            quantity: 2,
        };
        assert_eq!(key.search(&order).unwrap(), json!("o-9"));
    }

    #[test]
    fn nothing_matched_is_null() {
        let key = JmesPath::new("[headers.\"Idempotency-Key\", body.order_id]").unwrap();
        assert_eq!(
            key.search(&json!({"headers": {}})).unwrap(),
            json!([null, null])
        );
        let single = JmesPath::new("requestContext.requestId").unwrap();
        assert_eq!(single.search(&json!({})).unwrap(), Value::Null);
    }

    #[test]
    fn an_invalid_expression_is_refused_when_compiled() {
        let error = JmesPath::new("body.[").unwrap_err();
        assert_eq!(error.error_type(), "InvalidJmesPathExpression");
        assert!(error.to_string().contains("body.["), "{error}");
    }

    #[test]
    fn bad_data_for_a_powertools_function_is_a_typed_error() {
        let cases = [
            (
                "powertools_json(body)",
                json!({"body": "{not json"}),
                "invalid JSON",
            ),
            ("powertools_json(body)", json!({"body": 42}), "string"),
            (
                "powertools_base64(data)",
                // Python leaves out what is not base64 (`*`) and refuses the length left.
                json!({"data": "QUJ*"}),
                "invalid base64",
            ),
            (
                "powertools_base64_gzip(data)",
                json!({"data": base64::engine::general_purpose::STANDARD.encode("plain text")}),
                "invalid gzip",
            ),
            (
                "powertools_base64(data)",
                json!({"data": base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])}),
                "not UTF-8",
            ),
        ];
        for (expression, event, expected) in cases {
            let error = JmesPath::new(expression)
                .unwrap()
                .search(&event)
                .unwrap_err();
            assert_eq!(error.error_type(), "JmesPathExpressionFailed");
            let message = error.to_string();
            assert!(message.contains(expected), "{expression}: {message}");
            assert!(message.contains(expression), "{message}");
        }
    }

    /// `len` zeros, gzipped then base64-encoded: about a thousandth of `len`.
    fn zeros_gzip_base64(len: usize) -> String {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0_u8; 1024 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            encoder.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
    }

    /// 64 MiB of zeros in about 90 KB of base64, built once for the tests that need it.
    fn gzip_bomb() -> &'static str {
        static BOMB: LazyLock<String> = LazyLock::new(|| zeros_gzip_base64(64 * 1024 * 1024));
        &BOMB
    }

    /// The error of a search expected to fail, without printing a large result if it does not.
    fn search_error(key: &JmesPath, event: &Value) -> Error {
        match key.search(event) {
            Ok(found) => panic!(
                "`{}` should have failed, found {} bytes of JSON",
                key.as_str(),
                found.to_string().len()
            ),
            Err(error) => error,
        }
    }

    fn assert_too_large(error: &Error, expression: &str, expected_limit: usize) {
        assert_eq!(error.error_type(), "JmesPathDecompressedSizeExceeded");
        match error {
            Error::DecompressedSizeExceeded {
                expression: e,
                limit,
            } => {
                assert_eq!(e, expression);
                assert_eq!(*limit, expected_limit);
            }
            other => panic!("expected DecompressedSizeExceeded, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&format!("{expected_limit} bytes")),
            "{message}"
        );
        assert!(message.contains("with_max_decompressed_size"), "{message}");
    }

    #[test]
    fn the_default_limit_is_ten_mib() {
        assert_eq!(DEFAULT_MAX_DECOMPRESSED_SIZE, 10 * 1024 * 1024);
        let key = JmesPath::new("powertools_base64_gzip(data)").unwrap();
        assert_eq!(key.max_decompressed_size(), DEFAULT_MAX_DECOMPRESSED_SIZE);
    }

    #[test]
    fn a_gzip_bomb_fails_with_the_typed_error() {
        let expression = "powertools_json(powertools_base64_gzip(data)).logGroup";
        let key = JmesPath::new(expression).unwrap();
        let error = search_error(&key, &json!({"data": gzip_bomb()}));
        assert_too_large(&error, expression, DEFAULT_MAX_DECOMPRESSED_SIZE);
    }

    #[test]
    fn decompression_stops_one_byte_past_the_limit() {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(gzip_bomb())
            .unwrap();
        let limit = 1024 * 1024;
        let mut input = compressed.as_slice();
        let mut output = Vec::new();
        let fits = read_at_most(
            flate2::bufread::GzDecoder::new(&mut input),
            limit,
            &mut output,
        )
        .unwrap();
        assert!(!fits);
        // The decoder was read one byte past the limit, not to the end of the 64 MiB...
        assert_eq!(output.len(), limit + 1);
        // ...nothing larger was ever allocated...
        assert!(output.capacity() <= limit + 1, "{}", output.capacity());
        // ...and the compressed input was read only as far as that byte: a sixty-fourth of it,
        // give or take a block.
        let consumed = compressed.len() - input.len();
        assert!(
            consumed < compressed.len() / 32,
            "{consumed} of {} compressed bytes read",
            compressed.len()
        );
    }

    #[test]
    fn a_payload_at_the_limit_decodes_and_one_byte_more_fails() {
        let expression = "powertools_base64_gzip(data)";
        for limit in [0, 1, 1000, DEFAULT_MAX_DECOMPRESSED_SIZE] {
            let key = if limit == DEFAULT_MAX_DECOMPRESSED_SIZE {
                JmesPath::new(expression).unwrap()
            } else {
                JmesPath::new(expression)
                    .unwrap()
                    .with_max_decompressed_size(limit)
            };
            let at_limit = "a".repeat(limit);
            assert_eq!(
                key.search(&json!({"data": gzip_base64(&at_limit)}))
                    .unwrap(),
                json!(at_limit),
                "{limit}"
            );
            let over = "a".repeat(limit + 1);
            let error = search_error(&key, &json!({"data": gzip_base64(&over)}));
            assert_too_large(&error, expression, limit);
        }
    }

    #[test]
    fn a_custom_lower_limit_applies_to_that_expression_only() {
        let expression = "powertools_json(powertools_base64_gzip(data)).logGroup";
        let event = json!({"data": gzip_base64(r#"{"logGroup": "/aws/lambda/orders"}"#)});
        let default = JmesPath::new(expression).unwrap();
        let strict = default.clone().with_max_decompressed_size(16);
        assert_eq!(strict.max_decompressed_size(), 16);
        assert!(Arc::ptr_eq(&default.expression, &strict.expression));

        assert_too_large(&search_error(&strict, &event), expression, 16);
        assert_eq!(default.search(&event).unwrap(), json!("/aws/lambda/orders"));
        // A failed search leaves nothing behind for the next one on the thread.
        assert_eq!(default.search(&event).unwrap(), json!("/aws/lambda/orders"));
        assert_too_large(&search_error(&strict, &event), expression, 16);
    }

    #[test]
    fn a_higher_limit_lets_a_larger_payload_through() {
        let big = "b".repeat(DEFAULT_MAX_DECOMPRESSED_SIZE + 1);
        let event = json!({"data": gzip_base64(&big)});
        let key = JmesPath::new("length(powertools_base64_gzip(data))").unwrap();
        assert_eq!(
            search_error(&key, &event).error_type(),
            "JmesPathDecompressedSizeExceeded"
        );
        let relaxed = key.with_max_decompressed_size(usize::MAX);
        assert_eq!(relaxed.search(&event).unwrap(), json!(big.len()));
    }

    #[test]
    fn the_limit_bounds_everything_one_search_decompresses() {
        // A projection calls the function once per record: the limit is on their total, or a
        // batch of small bombs would get through one at a time.
        let record = gzip_base64(&"r".repeat(400));
        let event = json!({"records": [{"data": record}, {"data": record}, {"data": record}]});
        let expression = "records[*].powertools_base64_gzip(data)";
        let key = JmesPath::new(expression).unwrap();
        let strict = key.clone().with_max_decompressed_size(1199);
        assert_too_large(&search_error(&strict, &event), expression, 1199);
        let exact = key.with_max_decompressed_size(1200);
        // Each search starts with the whole budget.
        for _ in 0..3 {
            assert_eq!(exact.search(&event).unwrap().as_array().unwrap().len(), 3);
        }
    }

    #[test]
    fn truncated_or_corrupt_gzip_is_still_invalid_gzip() {
        let engine = base64::engine::general_purpose::STANDARD;
        let text = "x".repeat(5000) + &"y".repeat(5000);
        let valid = engine.decode(gzip_base64(&text)).unwrap();
        let truncated = &valid[..valid.len() / 2];
        let mut bad_checksum = valid.clone();
        let crc = bad_checksum.len() - 8;
        bad_checksum[crc] ^= 0xff;
        let mut bad_header = valid.clone();
        bad_header[0] = 0;
        let expression = "powertools_base64_gzip(data)";
        for (name, bytes) in [
            ("truncated", truncated.to_vec()),
            ("bad checksum", bad_checksum),
            ("bad header", bad_header),
        ] {
            for limit in [DEFAULT_MAX_DECOMPRESSED_SIZE, text.len()] {
                let key = JmesPath::new(expression)
                    .unwrap()
                    .with_max_decompressed_size(limit);
                let error = search_error(&key, &json!({"data": engine.encode(&bytes)}));
                assert_eq!(error.error_type(), "JmesPathExpressionFailed", "{name}");
                let message = error.to_string();
                assert!(message.contains("invalid gzip data"), "{name}: {message}");
                assert!(message.contains(expression), "{name}: {message}");
            }
        }
    }

    #[test]
    fn only_expressions_that_gunzip_carry_a_budget() {
        assert!(
            !JmesPath::new("powertools_json(body).id")
                .unwrap()
                .decompresses
        );
        assert!(
            !JmesPath::new("powertools_base64(data)")
                .unwrap()
                .decompresses
        );
        assert!(
            JmesPath::new("powertools_base64(powertools_base64_gzip(data))")
                .unwrap()
                .decompresses
        );
    }

    #[test]
    fn clones_share_one_compiled_expression() {
        let key = JmesPath::new("a").unwrap();
        let copy = key.clone();
        assert!(Arc::ptr_eq(&key.expression, &copy.expression));
        assert_eq!(format!("{copy:?}"), r#"JmesPath("a")"#);
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    fn base64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn powertools_json_reads_floats_exactly_as_to_number_does() {
        // serde_json's default float parser is a ULP off for about one float in ten
        // (0.9574970721535353 read as …352): exact with `float_roundtrip`, which the `jmespath`
        // feature turns on, as Python reads them (it was on only with powertools-idempotency).
        let path = JmesPath::new("[powertools_json(text), to_number(text)]").unwrap();
        for text in [
            "0.9574970721535353",
            "-3e23",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let expected: f64 = text.parse().unwrap();
            let found = path.search(&json!({ "text": text })).unwrap();
            assert_eq!(found, json!([expected, expected]), "{text}");
        }
    }

    /// `-0` is the integer 0, as Python's `json.loads` reads it (found by an attack from the
    /// docs: serde_json reads the float `-0.0`, so a key built on it differed from Python's);
    /// `-0.0` stays the float, and text in strings is left as it is.
    /// The texts Python's `json.loads` reads and JSON does not are refused naming what they are
    /// (serde_json's words alone said `expected value` for `NaN`: found by an attack).
    #[test]
    fn texts_python_reads_and_json_does_not_are_refused_naming_them() {
        let path = JmesPath::new("powertools_json(body)").unwrap();
        for (body, named) in [
            ("NaN", "`NaN` and `Infinity` are not JSON numbers"),
            ("Infinity", "`NaN` and `Infinity` are not JSON numbers"),
            ("-Infinity", "`NaN` and `Infinity` are not JSON numbers"),
            (
                "{\"a\":\n [1, NaN]}",
                "`NaN` and `Infinity` are not JSON numbers",
            ),
            (r#""\ud800""#, "lone surrogate escape"),
            (r#""\udc00""#, "lone surrogate escape"),
            (r#"{"a": "\ud800 and more"}"#, "lone surrogate escape"),
        ] {
            let error = path
                .search(&json!({ "body": body }))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(named) && error.contains("Python's json.loads reads"),
                "{body}: {error}"
            );
        }
        // Other invalid JSON is said in serde_json's words alone.
        let error = path
            .search(&json!({"body": "{nope"}))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("Python"), "{error}");
    }

    /// A function given the wrong type is named, as Python names it: one of several nested
    /// functions was not told apart (found by an attack).
    #[test]
    fn a_function_given_the_wrong_type_is_named() {
        for (expression, event, function) in [
            (
                "Records[*].kinesis.powertools_json(powertools_base64(data))",
                json!({"Records": [{"kinesis": {}}]}),
                "powertools_base64",
            ),
            (
                "Records[*].kinesis.powertools_json(powertools_base64(data))",
                json!({"Records": [{"kinesis": {"data": "bnVsbA=="}}], "x": 1}),
                "",
            ),
            (
                "length(a) == `1` && abs(b)",
                json!({"a": "x", "b": "y"}),
                "abs",
            ),
            (
                "sort_by(a, &b)",
                json!({"a": [{"b": 1}, {"b": "x"}]}),
                "sort_by",
            ),
            // The crate points at the last function it started, inside the argument (a review).
            ("max_by(@, &not_null(@))", json!([[1], [2]]), "max_by"),
            ("sort_by(@, &to_number(@))", json!(["1", "x"]), "sort_by"),
            ("sort_by(@, &abs(@))", json!([1, "x"]), "abs"),
        ] {
            let found = JmesPath::new(expression).unwrap().search(&event);
            if function.is_empty() {
                assert!(found.is_ok(), "{found:?}");
                continue;
            }
            let error = found.unwrap_err().to_string();
            assert!(
                error.contains(&format!("in function {function}(): ")),
                "{expression}: {error}"
            );
        }
    }

    #[test]
    fn powertools_json_reads_minus_zero_as_the_integer_zero_as_python_does() {
        let path = JmesPath::new("powertools_json(text)").unwrap();
        let found = path.search(&json!({"text": "-0"})).unwrap();
        assert!(found.is_u64() || found.is_i64(), "{found}");
        assert_eq!(found, json!(0));
        let found = path
            .search(&json!({"text": r#"{"a": [-0, -0.0, 0, -0e0], "-0": "-0"}"#}))
            .unwrap();
        assert_eq!(found.to_string(), r#"{"-0":"-0","a":[0,-0.0,0,-0.0]}"#);
    }

    /// Data that is not gzip is named so, as Python's `Not a gzipped file` (found by an attack
    /// from the docs: eight bytes of text were "unexpected end of file").
    #[test]
    fn data_that_is_not_gzip_is_named_so() {
        let path = JmesPath::new("powertools_base64_gzip(data)").unwrap();
        for data in [
            b"not gzip".as_slice(),
            b"x",
            b"\x78\x9c\x03\x00\x00\x00\x00\x01",
        ] {
            let error = path
                .search(&json!({ "data": base64(data) }))
                .unwrap_err()
                .to_string();
            assert!(error.contains("not gzip data"), "{error}");
            assert!(error.contains("where gzip starts with 1f 8b"), "{error}");
        }
        let two_members_then_text = [gzip("a"), b"zz".to_vec()].concat();
        let error = path
            .search(&json!({ "data": base64(&two_members_then_text) }))
            .unwrap_err()
            .to_string();
        assert!(error.contains("start with the bytes 7a 7a"), "{error}");
        // Said as what follows the gzip data, which itself starts as gzip does (it said "not
        // gzip data (it starts with the bytes 7a 7a…)": found by an attack from the docs).
        assert!(
            error.contains("the 2 bytes after the end of the gzip data are not gzip"),
            "{error}"
        );
        // One byte, after zero padding: counted without the padding, in the singular, and
        // not said to start as gzip does when it is only the first half of the magic number.
        let padded_then_one = [gzip("a"), vec![0, 0, 0x1f]].concat();
        let error = path
            .search(&json!({ "data": base64(&padded_then_one) }))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "the byte 1f after the end of the gzip data (and its zero padding) is not gzip"
            ),
            "{error}"
        );
    }

    #[test]
    fn every_gzip_member_is_decompressed_and_trailing_bytes_are_an_error() {
        // As Python's `gzip.decompress`: two members are one text; bytes after the last member
        // that are not a member are an error, never ignored.
        let text = JmesPath::new("powertools_base64_gzip(data)").unwrap();
        let two = [gzip(r#"{"a": 1,"#), gzip(r#" "b": 2}"#)].concat();
        assert_eq!(
            text.search(&json!({ "data": base64(&two) })).unwrap(),
            json!(r#"{"a": 1, "b": 2}"#)
        );
        // Zero bytes between and after members are padding, as Python strips them; an empty
        // payload is empty text. Zero bytes before the first member, or zeros alone, are not a
        // gzip file (Python 3.11: `BadGzipFile: Not a gzipped file (b'\x00\x00')`).
        let padded = [gzip("a"), vec![0; 5], gzip("b"), vec![0; 7]].concat();
        assert_eq!(
            text.search(&json!({ "data": base64(&padded) })).unwrap(),
            json!("ab")
        );
        assert_eq!(text.search(&json!({ "data": "" })).unwrap(), json!(""));
        for not_gzip in [[vec![0; 2], gzip("a")].concat(), vec![0; 2]] {
            let error = text
                .search(&json!({ "data": base64(&not_gzip) }))
                .unwrap_err();
            assert!(matches!(error, Error::JmesPathFailed { .. }), "{error:?}");
        }
        let trailing = [gzip(r#""hello""#), b"not gzip".to_vec()].concat();
        let error = text
            .search(&json!({ "data": base64(&trailing) }))
            .unwrap_err();
        assert!(matches!(error, Error::JmesPathFailed { .. }), "{error:?}");
        // Two members count against one budget.
        let small = JmesPath::new("powertools_base64_gzip(data)")
            .unwrap()
            .with_max_decompressed_size(10);
        let error = small
            .search(&json!({ "data": base64(&[gzip("123456"), gzip("789012")].concat()) }))
            .unwrap_err();
        assert!(
            matches!(error, Error::DecompressedSizeExceeded { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn line_wrapped_base64_decodes_as_python_decodes_it() {
        // Python's `base64.b64decode` leaves out what is not in the alphabet: MIME's 76-character
        // lines, a trailing newline.
        let encoded = base64(&[b'x'; 120]);
        let wrapped = format!("{}\r\n{}\n", &encoded[..76], &encoded[76..]);
        let plain = JmesPath::new("powertools_base64(data)").unwrap();
        assert_eq!(
            plain.search(&json!({ "data": wrapped })).unwrap(),
            json!("x".repeat(120))
        );
        let zipped = base64(&gzip("zipped"));
        let wrapped = format!("{}\n{}\n", &zipped[..10], &zipped[10..]);
        let gunzip = JmesPath::new("powertools_base64_gzip(data)").unwrap();
        assert_eq!(
            gunzip.search(&json!({ "data": wrapped })).unwrap(),
            json!("zipped")
        );
        assert_eq!(
            plain.search(&json!({ "data": "QU JD*" })).unwrap(),
            json!("ABC")
        );
        // What CPython 3.11's `base64.b64decode` gives for the same text.
        for (encoded, python) in [
            ("YQ==YQ==", Some("a")),
            ("YR==", Some("a")),
            ("=YWJj", Some("abc")),
            ("Y=WJj", Some("abc")),
            ("YWJj====", Some("abc")),
            ("YQ===", Some("a")),
            ("YWJjZA", None),
            ("YWJjZ", None),
            ("QUJ", None),
            ("YWJj\u{e9}", None),
        ] {
            let decoded = plain.search(&json!({ "data": encoded }));
            match python {
                Some(text) => assert_eq!(decoded.unwrap(), json!(text), "{encoded}"),
                None => assert!(decoded.is_err(), "{encoded}: {decoded:?}"),
            }
        }
    }

    #[test]
    fn a_deep_or_long_expression_is_refused_when_compiled_not_a_crash() {
        for expression in [
            format!("{}a{}", "(".repeat(2_000), ")".repeat(2_000)),
            format!("{}a", "!".repeat(50_000)),
            format!("{}a{}", "[".repeat(2_000), "]".repeat(2_000)),
            format!("{}a: b{}", "{".repeat(2_000), "}".repeat(2_000)),
            format!("a{}", ".a".repeat(20_000)),
            format!("a{}", " | a".repeat(20_000)),
            format!("a{}", " || a".repeat(20_000)),
            format!("a{}", " && a".repeat(20_000)),
            format!("a{}", "[*].a".repeat(2_000)),
            format!("a{}", " == a".repeat(20_000)),
        ] {
            let error = JmesPath::new(&expression).unwrap_err();
            assert!(matches!(error, Error::InvalidJmesPath { .. }), "{error:?}");
            assert!(error.to_string().contains("operators"), "{error}");
        }
        // Quoted text is not operators.
        let quoted = format!("\"{}\"", "(.|".repeat(2_000));
        assert!(JmesPath::new(&quoted).is_ok());
        assert!(JmesPath::new(&format!("'{}'", "[.&".repeat(2_000))).is_ok());
        assert!(JmesPath::new(&format!("`\"{}\"`", "{.!".repeat(2_000))).is_ok());
    }

    /// Operators side by side (a multi-select's elements, a function's arguments) nest the
    /// expression no deeper than the deepest of them: counted in all, a flat multi-select of 32
    /// paths was refused, which Powertools for Python 3.37 evaluates (found by a new user
    /// porting a key expression).
    #[test]
    fn operators_side_by_side_count_as_the_deepest_of_them() {
        let list = (0..32)
            .map(|field| format!("detail.order.f{field}"))
            .collect::<Vec<_>>()
            .join(", ");
        let hash = (0..200)
            .map(|field| format!("k{field}: detail.order.f{field}"))
            .collect::<Vec<_>>()
            .join(", ");
        let arguments = (0..40)
            .map(|field| format!("detail.order.f{field}"))
            .collect::<Vec<_>>()
            .join(", ");
        let data = json!({"detail": {"order": {"f0": 1, "f31": 2, "f39": "x"}}});
        for (expression, expected) in [
            (format!("[{list}]"), 32),
            (format!("{{{hash}}}"), 200),
            (format!("not_null({arguments})"), 1),
        ] {
            let path = JmesPath::new(&expression).unwrap_or_else(|error| panic!("{error}"));
            let found = path.search(&data).unwrap();
            let len = match &found {
                Value::Array(values) => values.len(),
                Value::Object(members) => members.len(),
                _ => 1,
            };
            assert_eq!(len, expected, "{expression}: {found}");
        }
        // Still refused: operators one inside another, in an element of a multi-select too.
        let deep = format!("a{}", ".a".repeat(MAX_EXPRESSION_OPERATORS + 1));
        for expression in [
            deep.clone(),
            format!("[x, {deep}]"),
            format!("f(x, [{deep}])"),
        ] {
            let error = JmesPath::new(&expression).unwrap_err();
            assert!(error.to_string().contains("operators"), "{error}");
        }
        // The chain around a group counts with what is inside it: `[x.y].a.a…` nests the
        // group's elements under every `.a` after it.
        let around = format!("[{}]{}", "x.".repeat(33) + "x", ".a".repeat(33));
        assert!(JmesPath::new(&around).is_err());
        // The message names every operator it counts: 64 `[*]` are 65 operators, counting
        // each `*` (a review: `?`, `*` and `&` were not named).
        let projections = format!("Records{}", "[*]".repeat(MAX_EXPRESSION_OPERATORS));
        let message = JmesPath::new(&projections).unwrap_err().to_string();
        assert!(
            message.contains("65 operators") && message.contains("`*`"),
            "{message}"
        );
    }

    #[test]
    fn the_longest_accepted_expression_searches_on_a_small_stack() {
        // As many operators as accepted, each a level: compiled and searched on a thread with
        // a tokio worker's 2 MiB stack, in this (debug) build.
        let arrays = (0..80).fold(json!(1), |inner, _| json!([inner]));
        let nested_b = (0..80).fold(json!(1), |inner, _| json!({ "b": [inner] }));
        let filters = (0..MAX_EXPRESSION_OPERATORS / 2)
            .fold("b".to_owned(), |inner, _| format!("b[?{inner}]"));
        let simple = json!({"a": {"a": 1}});
        let chains = [
            (
                format!("a{}", ".a".repeat(MAX_EXPRESSION_OPERATORS)),
                simple.clone(),
            ),
            (
                format!("a{}", " || a".repeat(MAX_EXPRESSION_OPERATORS)),
                simple.clone(),
            ),
            (
                format!("{}a", "!".repeat(MAX_EXPRESSION_OPERATORS)),
                simple.clone(),
            ),
            (
                format!(
                    "{}a{}",
                    "(".repeat(MAX_EXPRESSION_OPERATORS),
                    ")".repeat(MAX_EXPRESSION_OPERATORS)
                ),
                simple,
            ),
            // Found by a review: 110 flattens overflowed 2 MiB when 128 operators were accepted.
            (
                format!("Records{}", "[]".repeat(MAX_EXPRESSION_OPERATORS)),
                json!({ "Records": arrays }),
            ),
            (
                format!("@{}", "[?@]".repeat(MAX_EXPRESSION_OPERATORS / 2)),
                arrays.clone(),
            ),
            // Groups one after another count their brackets in the chain, and only the
            // deepest group's inside: twice as many filters and projections as before.
            (
                format!("@{}", "[?@]".repeat(MAX_EXPRESSION_OPERATORS - 1)),
                arrays.clone(),
            ),
            (
                format!("Records{}", "[*]".repeat(MAX_EXPRESSION_OPERATORS - 1)),
                json!({ "Records": arrays }),
            ),
            (
                format!("@{}", "[?@ == @]".repeat(MAX_EXPRESSION_OPERATORS - 2)),
                arrays.clone(),
            ),
            (
                format!("b{}", "[*].b".repeat(MAX_EXPRESSION_OPERATORS / 2 - 1)),
                nested_b.clone(),
            ),
            (
                format!("{}@{}", "not_null(".repeat(63), ")".repeat(63)),
                arrays.clone(),
            ),
            (filters, nested_b),
        ];
        for (chain, data) in chains {
            let searched = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || {
                    let path = JmesPath::new(&chain).map_err(|error| error.to_string())?;
                    path.search(&data)
                        .map(|_| ())
                        .map_err(|error| error.to_string())
                })
                .unwrap()
                .join()
                .expect("no stack overflow");
            assert!(searched.is_ok(), "{searched:?}");
        }
    }

    #[test]
    fn a_misspelt_function_is_refused_when_compiled() {
        for expression in [
            "headers.key || powertools_jsn(body).key",
            "[a, {b: lenght(c)}]",
            "sort_by(items, &prices(@))",
        ] {
            let error = JmesPath::new(expression).unwrap_err();
            assert!(matches!(error, Error::InvalidJmesPath { .. }), "{error:?}");
            assert!(error.to_string().contains("unknown function"), "{error}");
        }
        assert!(JmesPath::new("sort_by(items, &length(@))").is_ok());
    }

    #[test]
    fn integers_beyond_64_bits_in_json_text_are_an_error_not_rounded_together() {
        // `1e23` in a key would make two orders one: refused, with what to do.
        let key = JmesPath::new("powertools_json(body).order_id").unwrap();
        for body in [
            r#"{"order_id": 100000000000000000000001}"#,
            r#"{"order_id": -100000000000000000000001}"#,
            r#"{"order_id": 18446744073709551616}"#,
        ] {
            let error = key.search(&json!({ "body": body })).unwrap_err();
            assert!(matches!(error, Error::JmesPathFailed { .. }), "{error:?}");
            assert!(error.to_string().contains("64 bits"), "{error}");
        }
        // The 64-bit edges and floats are kept as they are.
        for (body, expected) in [
            (
                r#"{"order_id": 18446744073709551615}"#,
                json!(18_446_744_073_709_551_615_u64),
            ),
            (r#"{"order_id": -9223372036854775808}"#, json!(i64::MIN)),
            (r#"{"order_id": 1e23}"#, json!(1e23)),
            (
                r#"{"order_id": "100000000000000000000001", "n": 0}"#,
                json!("100000000000000000000001"),
            ),
        ] {
            assert_eq!(
                key.search(&json!({ "body": body })).unwrap(),
                expected,
                "{body}"
            );
        }
        // A float of that many digits is a float, as written (how close to it depends on
        // serde_json's `float_roundtrip`, which the workspace may turn on).
        let float = key
            .search(&json!({ "body": r#"{"order_id": 100000000000000000000001.5}"# }))
            .unwrap();
        assert!(
            float
                .as_f64()
                .is_some_and(|value| (value - 1e23).abs() < 1e9),
            "{float}"
        );
    }

    #[test]
    fn json_text_with_more_values_than_the_limit_is_refused_before_it_is_parsed() {
        let length = JmesPath::new("length(powertools_json(body))").unwrap();
        let at_limit = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES - 2));
        assert_eq!(
            length.search(&json!({ "body": at_limit })).unwrap(),
            json!(MAX_JSON_VALUES - 1)
        );
        let over = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        let error = length.search(&json!({ "body": over })).unwrap_err();
        assert!(error.to_string().contains("values"), "{error}");
    }

    #[test]
    fn avg_of_nothing_is_null_and_function_errors_do_not_say_parse_error() {
        let avg = JmesPath::new("avg(@)").unwrap();
        assert_eq!(avg.search(&json!([])).unwrap(), Value::Null);
        assert_eq!(avg.search(&json!([1, 2])).unwrap(), json!(1.5));
        let error = JmesPath::new("powertools_json(body)")
            .unwrap()
            .search(&json!({"body": "{"}))
            .unwrap_err();
        assert!(!error.to_string().contains("Parse error"), "{error}");
        assert!(
            error.to_string().contains("powertools_json: invalid JSON"),
            "{error}"
        );
    }

    /// `avg` of integers divides as Python's `int / int`: the exact ratio rounded once (found
    /// by an attack from the docs: the total was rounded to a float first). The expected values
    /// are Python 3's, `repr(total / count)`, each total spread over `count` integers.
    #[test]
    fn avg_of_integers_is_the_exact_ratio_rounded_once_as_in_python() {
        let avg = JmesPath::new("avg(@)").unwrap();
        let cases: [(i128, usize, f64); 10] = [
            (9_007_199_254_740_993, 3, 3_002_399_751_580_331.0),
            (1_152_921_504_606_846_983, 3, 3.843_071_682_022_823e17),
            (-36_028_797_018_963_971, 7, -5_146_971_002_709_139.0),
            (18_446_744_073_709_551_615, 3, 6.148_914_691_236_517e18),
            (46_116_860_184_273_879_041, 11, 4.192_441_834_933_989e18),
            (123_456_789_012_345_678, 1000, 123_456_789_012_345.67),
            (9_007_199_254_740_995, 2, 4_503_599_627_370_498.0),
            (-9_223_372_036_854_775_808, 3, -3.074_457_345_618_258_4e18),
            (9_007_199_254_740_991, 7, 1_286_742_750_677_284.5),
            (999_999_999_999_999_999, 500_000, 2_000_000_000_000.0),
        ];
        for (total, count, python) in cases {
            // The total as one integer (within 64 bits, as JSON integers are) and zeros, or
            // split over u64s when it is beyond them.
            let mut items: Vec<Value> = Vec::with_capacity(count);
            let mut left = total;
            while left > i128::from(i64::MAX) {
                items.push(json!(u64::MAX));
                left -= i128::from(u64::MAX);
            }
            items.push(json!(i64::try_from(left).unwrap()));
            items.resize(count, json!(0));
            assert_eq!(
                avg.search(&Value::Array(items)).unwrap(),
                json!(python),
                "{total} / {count}"
            );
            assert_eq!(
                integer_ratio(total, count).to_bits(),
                python.to_bits(),
                "{total} / {count}"
            );
        }
    }

    #[test]
    fn integer_arithmetic_stays_exact_as_in_python() {
        // `jmespath`'s own `sum`, `abs`, `ceil` and `floor` go through f64: two ids past 2^53
        // summed or floored into one number would be one idempotency key. Python keeps ints.
        let search =
            |expression: &str, data: Value| JmesPath::new(expression).unwrap().search(&data);
        let beyond_f64 = 9_007_199_254_740_993_u64;
        assert_eq!(
            search("sum(@)", json!([beyond_f64, 0])).unwrap(),
            json!(beyond_f64)
        );
        assert_eq!(
            search("sum(@)", json!([i64::MAX, 1])).unwrap(),
            json!(9_223_372_036_854_775_808_u64)
        );
        assert_eq!(search("sum(@)", json!([-5, 2])).unwrap(), json!(-3));
        assert_eq!(search("sum(@)", json!([])).unwrap().to_string(), "0");
        assert_eq!(search("sum(@)", json!([1, 2.5])).unwrap(), json!(3.5));
        // Left to right, as Python's `sum`: integers add exactly until a float comes, then floats
        // (a second review found every element made a float first).
        assert_eq!(
            search("sum(@)", json!([beyond_f64, 1, 0.5])).unwrap(),
            json!(9_007_199_254_740_994.0)
        );
        assert_eq!(
            search("avg(@)", json!([beyond_f64, 1])).unwrap(),
            json!(4_503_599_627_370_497.0)
        );
        assert_eq!(
            search("avg(@)", json!([i64::MIN, i64::MAX])).unwrap(),
            json!(-0.5)
        );
        let error = search("sum(@)", json!([u64::MAX, 1])).unwrap_err();
        assert!(error.to_string().contains("64 bits"), "{error}");
        assert_eq!(
            search("abs(@)", json!(-9_007_199_254_740_993_i64)).unwrap(),
            json!(beyond_f64)
        );
        assert_eq!(
            search("abs(@)", json!(i64::MIN)).unwrap(),
            json!(9_223_372_036_854_775_808_u64)
        );
        assert_eq!(search("abs(@)", json!(-1.5)).unwrap(), json!(1.5));
        for function in ["ceil", "floor"] {
            let expression = format!("{function}(@)");
            assert_eq!(
                search(&expression, json!(beyond_f64)).unwrap(),
                json!(beyond_f64)
            );
            assert_eq!(
                search(&expression, json!(i64::MIN)).unwrap(),
                json!(i64::MIN)
            );
        }
        // Of a float, an integer, as Python's `math.floor` and `math.ceil` give.
        assert_eq!(search("floor(@)", json!(1.5)).unwrap().to_string(), "1");
        assert_eq!(search("ceil(@)", json!(-1.5)).unwrap().to_string(), "-1");
        assert_eq!(search("ceil(@)", json!(1e300)).unwrap(), json!(1e300));
    }

    #[test]
    fn to_number_reads_numbers_only_and_keeps_integers_exact() {
        let to_number = JmesPath::new("to_number(@)").unwrap();
        let search = |data: Value| to_number.search(&data);
        for (text, expected) in [
            ("9007199254740993", json!(9_007_199_254_740_993_u64)),
            ("-12", json!(-12)),
            (" 12\n", json!(12)),
            ("+7", json!(7)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            ("18446744073709551615", json!(u64::MAX)),
        ] {
            assert_eq!(search(json!(text)).unwrap(), expected, "{text:?}");
        }
        // `jmespath`'s own parsed any JSON text: `to_number('[1,2]')` was an array, and a
        // hostile text was parsed whole, past `powertools_json`'s limit on values.
        let hostile = "[".repeat(100) + &"]".repeat(100);
        for text in [
            "[1,2]",
            "true",
            "null",
            r#"{"a":1}"#,
            r#""5""#,
            "",
            "12abc",
            "nan",
            "inf",
            "1e400",
            "0x10",
            "1_000",
            hostile.as_str(),
        ] {
            assert_eq!(search(json!(text)).unwrap(), Value::Null, "{text:?}");
        }
        let error = search(json!("100000000000000000000001")).unwrap_err();
        assert!(error.to_string().contains("64 bits"), "{error}");
        assert_eq!(search(json!(2.5)).unwrap(), json!(2.5));
        assert_eq!(search(json!([1])).unwrap(), Value::Null);
        assert_eq!(search(json!(false)).unwrap(), Value::Null);
    }

    /// A typed event is searched as serde_json writes it: a `u128` or `i128` and a map keyed by
    /// integers, anywhere in it, failed every search with the `jmespath` crate's serializer
    /// ("u128 is not supported", "KeyMustBeAString"), whatever the expression read (found by an
    /// attack from the docs).
    #[test]
    fn a_typed_event_is_searched_as_serde_json_writes_it() {
        #[derive(Serialize)]
        struct Transfer {
            id: &'static str,
            amount: u128,
            fee: i128,
            lines: std::collections::BTreeMap<i64, &'static str>,
        }
        let event = Transfer {
            id: "t-1",
            amount: 5,
            fee: -1,
            lines: std::collections::BTreeMap::from([(-3, "rent")]),
        };
        let path = JmesPath::new(r#"[id, amount, fee, lines."-3"]"#).unwrap();
        assert_eq!(path.search(&event).unwrap(), json!(["t-1", 5, -1, "rent"]));
        // Beyond 64 bits, JSON's `Value` cannot hold it: a failed search that says so.
        let huge = Transfer {
            amount: u128::MAX,
            ..event
        };
        let error = path.search(&huge).unwrap_err();
        assert!(
            error.to_string().contains("cannot be written as JSON"),
            "{error}"
        );
    }
}
