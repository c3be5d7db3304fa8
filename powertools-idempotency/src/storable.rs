//! Whether a response can be stored as JSON and read back as the same value.
//!
//! serde_json writes NaN and ±Infinity as `null`, so a response holding one would replay as
//! something else (or fail to parse at all for an `f64` field). This walks the response through
//! serde once, without allocating, and names the first value JSON cannot hold. It also notes
//! what the walk cannot settle alone: how deep the JSON nests (serde_json reads 127 levels) and
//! whether it holds a 128-bit integer (which serde reads back only where it does not buffer).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::ser::{self, Serialize};

/// What the walk of a storable value saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shape {
    /// The deepest nesting of JSON arrays and objects it writes as.
    pub(crate) depth: usize,
    /// Whether it holds what serde reads back only where it does not buffer values
    /// (`#[serde(flatten)]`, internally tagged and untagged enums): a `u128` or an `i128`, or a
    /// map key that is not a string (serde_json writes `7` as `"7"`, and a buffered value
    /// keeps it a string).
    pub(crate) buffering_sensitive: bool,
    /// Whether it holds an `f32` that serde would read back as another `f32` where it buffers
    /// values: buffered, serde_json reads a number as an `f64`, which the field narrows, a
    /// double rounding that changes `7.038531e-26` (bits `0x15ae43fd`) and its negative by one
    /// unit in the last place. Such a response is read back and compared.
    pub(crate) f32_changed_if_buffered: bool,
    /// Whether an object it writes holds one key twice: a `#[serde(flatten)]` map holding the
    /// name of a field beside it, an internally tagged enum's tag named as a field of its
    /// variant, or a `Serialize` of its own that writes a key twice (a map's or a struct's). serde_json
    /// writes both; reading them back fails for a struct (`duplicate field`) and keeps the last
    /// for a map, another value.
    pub(crate) duplicate_key: bool,
}

/// Whether serde_json keeps numbers as they were written (its `arbitrary_precision` feature,
/// which any crate in the build can turn on: features unify): asked of serde_json once.
pub(crate) fn numbers_kept_as_written() -> bool {
    static KEPT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEPT.get_or_init(|| {
        serde_json::from_str::<serde_json::Value>("1.50")
            .and_then(|number| serde_json::to_string(&number))
            .is_ok_and(|written| written == "1.50")
    })
}

/// Its [`Shape`] when every float in `value` is finite; otherwise why it cannot be stored.
pub(crate) fn check_storable<T: Serialize + ?Sized>(value: &T) -> Result<Shape, String> {
    let seen = Seen::default();
    value
        .serialize(FiniteCheck {
            depth: 0,
            seen: &seen,
        })
        .map_err(|error| error.0)?;
    Ok(Shape {
        depth: seen.depth.get(),
        buffering_sensitive: seen.buffering_sensitive.get(),
        f32_changed_if_buffered: seen.f32_changed_if_buffered.get(),
        duplicate_key: seen.duplicate_key.get(),
    })
}

/// Whether `value`, written as serde_json writes an `f32` (its shortest text), read as an
/// `f64` (as serde buffers a number) and narrowed to `f32`, would be another `f32`: true for
/// `7.038531e-26` (bits `0x15ae43fd`) and its negative alone, found by doing that to every
/// finite `f32` (`tests::the_one_f32_buffering_changes_is_the_one_the_check_names` keeps the
/// shortcut honest against ryu and the parser on a sample of a million).
fn f32_changed_if_buffered(value: f32) -> bool {
    value.to_bits() & 0x7fff_ffff == 0x15ae_43fd
}

/// The bits of every `f32` in `value`, in the order serde writes them.
pub(crate) fn f32_bits<T: Serialize + ?Sized>(value: &T) -> Vec<u32> {
    let seen = Seen {
        f32s: Some(RefCell::new(Vec::new())),
        ..Seen::default()
    };
    // Only storable values are read back, so the walk does not fail; were it to, the bits seen
    // so far differ from a complete walk's and the response is not stored.
    let _ = value.serialize(FiniteCheck {
        depth: 0,
        seen: &seen,
    });
    seen.f32s.map(RefCell::into_inner).unwrap_or_default()
}

#[derive(Default)]
struct Seen {
    depth: Cell<usize>,
    buffering_sensitive: Cell<bool>,
    f32_changed_if_buffered: Cell<bool>,
    /// The bits of each `f32`, when collecting them ([`f32_bits`]).
    f32s: Option<RefCell<Vec<u32>>>,
    /// Set while a map key is serialized.
    in_key: Cell<bool>,
    /// The text of the map key being serialized, as serde_json writes it.
    key_text: RefCell<Option<String>>,
    duplicate_key: Cell<bool>,
    /// The fields of the structs being walked, outermost first, each with its signature
    /// ([`StructCheck`]): one list for the whole walk, so that a struct's walk holds only where
    /// its fields begin (a list of its own on the stack overflowed it at a few thousand levels
    /// of nesting, where the walk went past sixteen thousand; found by a review).
    struct_fields: RefCell<Vec<(u8, &'static str)>>,
}

#[derive(Debug)]
pub(crate) struct NotStorable(String);

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotStorable {}

impl ser::Error for NotStorable {
    /// A `Serialize` implementation's own message may quote the value (a card number): only
    /// serde_json's own reasons are kept (a review found one in the key data's error).
    fn custom<T: fmt::Display>(message: T) -> Self {
        NotStorable(
            powertools_core::serde_message::serialize_reason(&message.to_string()).to_owned(),
        )
    }
}

/// A serializer that writes nothing and refuses non-finite floats; `depth` is how many JSON
/// arrays and objects enclose what it is given.
#[derive(Clone, Copy)]
struct FiniteCheck<'s> {
    depth: usize,
    seen: &'s Seen,
}

impl FiniteCheck<'_> {
    /// The serializer for what `levels` more arrays or objects enclose.
    fn within(self, levels: usize) -> Self {
        let depth = self.depth + levels;
        if depth > self.seen.depth.get() {
            self.seen.depth.set(depth);
        }
        FiniteCheck { depth, ..self }
    }

    fn wide_integer(self) -> Result<(), NotStorable> {
        self.seen.buffering_sensitive.set(true);
        Ok(())
    }

    /// A scalar that is not a string, written as `text`: as a map key, serde_json writes it as
    /// a string.
    fn not_a_string(self, text: impl FnOnce() -> String) -> Result<(), NotStorable> {
        if self.seen.in_key.get() {
            self.seen.buffering_sensitive.set(true);
            self.key_text(text);
        }
        Ok(())
    }

    /// Notes `text` as the text of the map key being serialized, if one is.
    fn key_text(self, text: impl FnOnce() -> String) {
        if self.seen.in_key.get() {
            *self.seen.key_text.borrow_mut() = Some(text());
        }
    }
}

/// A map's walk: the keys it wrote so far, to find one written twice.
pub(crate) struct MapCheck<'s> {
    check: FiniteCheck<'s>,
    keys: foldhash::HashSet<String>,
}

/// Accepts scalars that are not strings, noting them as map keys.
macro_rules! not_strings {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, value: $type) -> Result<(), NotStorable> {
            self.not_a_string(|| value.to_string())
        })*
    };
}

fn float(value: f64) -> Result<(), NotStorable> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(NotStorable(format!(
            "it holds {value}, which JSON cannot represent (serde_json would store null)"
        )))
    }
}

impl<'s> ser::Serializer for FiniteCheck<'s> {
    type Ok = ();
    type Error = NotStorable;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = MapCheck<'s>;
    type SerializeStruct = StructCheck<'s>;
    type SerializeStructVariant = StructCheck<'s>;

    not_strings!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
    );

    fn serialize_char(self, value: char) -> Result<(), NotStorable> {
        self.key_text(|| value.to_string());
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), NotStorable> {
        self.key_text(|| value.to_owned());
        Ok(())
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<(), NotStorable> {
        // An array of numbers in JSON.
        self.within(1);
        Ok(())
    }

    fn serialize_i128(self, value: i128) -> Result<(), NotStorable> {
        self.key_text(|| value.to_string());
        self.wide_integer()
    }

    fn serialize_u128(self, value: u128) -> Result<(), NotStorable> {
        self.key_text(|| value.to_string());
        self.wide_integer()
    }

    fn serialize_f32(self, value: f32) -> Result<(), NotStorable> {
        float(f64::from(value))?;
        if f32_changed_if_buffered(value) {
            self.seen.f32_changed_if_buffered.set(true);
        }
        if let Some(f32s) = &self.seen.f32s {
            f32s.borrow_mut().push(value.to_bits());
        }
        self.not_a_string(|| serde_json::to_string(&value).unwrap_or_default())
    }

    fn serialize_f64(self, value: f64) -> Result<(), NotStorable> {
        float(value)?;
        self.not_a_string(|| serde_json::to_string(&value).unwrap_or_default())
    }

    fn serialize_none(self) -> Result<(), NotStorable> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotStorable> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NotStorable> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), NotStorable> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), NotStorable> {
        self.key_text(|| variant.to_owned());
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), NotStorable> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), NotStorable> {
        // `{"Variant": value}`
        value.serialize(self.within(1))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, NotStorable> {
        Ok(self.within(1))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, NotStorable> {
        Ok(self.within(1))
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, NotStorable> {
        Ok(self.within(1))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, NotStorable> {
        // `{"Variant": [...]}`
        Ok(self.within(2))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapCheck<'s>, NotStorable> {
        Ok(MapCheck {
            check: self.within(1),
            keys: foldhash::HashSet::default(),
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<StructCheck<'s>, NotStorable> {
        Ok(StructCheck::new(self.within(1)))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<StructCheck<'s>, NotStorable> {
        // `{"Variant": {...}}`
        Ok(StructCheck::new(self.within(2)))
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteCheck<'_> {
            type Ok = ();
            type Error = NotStorable;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotStorable> {
                value.serialize(*self)
            }

            fn end(self) -> Result<(), NotStorable> {
                Ok(())
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for MapCheck<'_> {
    type Ok = ();
    type Error = NotStorable;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NotStorable> {
        let seen = self.check.seen;
        seen.in_key.set(true);
        let checked = key.serialize(self.check);
        seen.in_key.set(false);
        // A key serde_json would refuse (a sequence, say) fails the write itself: no text.
        let text = seen.key_text.borrow_mut().take();
        if let Some(text) = text
            && !self.keys.insert(text)
        {
            seen.duplicate_key.set(true);
        }
        checked
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotStorable> {
        value.serialize(self.check)
    }

    fn end(self) -> Result<(), NotStorable> {
        Ok(())
    }
}

/// A struct's walk, to find a field written twice: an internally tagged enum's tag beside a
/// field of the same name (`#[serde(tag = "type")]` around a struct with a `type` field), a
/// name given to two fields (`#[serde(rename)]`), or a `Serialize` of its own (found by a
/// review). Its fields go on the walk's one list ([`Seen`]), from `start`.
pub(crate) struct StructCheck<'s> {
    check: FiniteCheck<'s>,
    start: usize,
    /// One bit per field written, picked by its length and its first and last bytes: a field
    /// whose bit is not set yet was not written, and costs no comparison (comparing each field
    /// with every earlier one cost a first call about 450 instructions, and a 64-field struct
    /// thirty times its JSON's writing; a review).
    signatures: u64,
}

impl<'s> StructCheck<'s> {
    fn new(check: FiniteCheck<'s>) -> Self {
        let start = check.seen.struct_fields.borrow().len();
        StructCheck {
            check,
            start,
            signatures: 0,
        }
    }

    fn note(&mut self, key: &'static str) {
        let bytes = key.as_bytes();
        let mix = bytes.len()
            ^ usize::from(bytes.first().copied().unwrap_or(0)).wrapping_mul(7)
            ^ usize::from(bytes.last().copied().unwrap_or(0)).wrapping_mul(31);
        // Below 64: the cast keeps it.
        let signature = (mix % 64) as u8;
        let bit = 1_u64 << signature;
        let mut fields = self.check.seen.struct_fields.borrow_mut();
        // A nested struct's fields were taken off the list when it ended.
        let own = fields.get(self.start..).unwrap_or_default();
        if self.signatures & bit != 0
            && own
                .iter()
                .any(|&(other, name)| other == signature && name == key)
        {
            self.check.seen.duplicate_key.set(true);
            return;
        }
        self.signatures |= bit;
        fields.push((signature, key));
    }

    fn end(&self) {
        self.check
            .seen
            .struct_fields
            .borrow_mut()
            .truncate(self.start);
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for StructCheck<'_> {
            type Ok = ();
            type Error = NotStorable;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), NotStorable> {
                self.note(key);
                value.serialize(self.check)
            }

            fn end(self) -> Result<(), NotStorable> {
                StructCheck::end(&self);
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// The shortcut against what it stands for: the `f32` written as serde_json writes it
    /// (ryu's shortest text), read as an `f64` (the parser) and narrowed, on a million patterns
    /// spread over every `f32`, the changed one and its neighbours. (Every finite `f32` was
    /// checked once, in a release build: only `0x15ae43fd` and its negative change.)
    #[test]
    fn the_one_f32_buffering_changes_is_the_one_the_check_names() {
        let changes = |value: f32| {
            let mut text = ryu::Buffer::new();
            let read: f64 = text
                .format_finite(value)
                .parse()
                .expect("ryu's text parses");
            (read as f32).to_bits() != value.to_bits()
        };
        let special = [0x15ae_43fc_u32, 0x15ae_43fd, 0x15ae_43fe, 0x95ae_43fd];
        let sample = (0..u32::MAX).step_by(4093).chain(special);
        for bits in sample {
            let value = f32::from_bits(bits);
            if value.is_finite() {
                assert_eq!(f32_changed_if_buffered(value), changes(value), "{bits:#x}");
            }
        }
        assert!(f32_changed_if_buffered(f32::from_bits(0x95ae_43fd)));
    }

    /// A response nested thousands of structs deep is walked on a worker thread's 2 MiB stack,
    /// in a debug build: a list of fields on each struct's walk overflowed it, aborting the
    /// process, where such a response is refused storage (found by a review, at 5,000 to 8,000
    /// levels in a release build, where the walk went past 16,000 before).
    #[test]
    fn a_response_nested_three_thousand_structs_deep_is_walked_on_a_small_stack() {
        #[derive(serde::Serialize)]
        struct Node {
            v: u8,
            next: Option<Box<Node>>,
        }
        let walked = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let mut node = Node { v: 0, next: None };
                for _ in 0..3000 {
                    node = Node {
                        v: 1,
                        next: Some(Box::new(node)),
                    };
                }
                let shape = check_storable(&node).map(|shape| shape.depth);
                // Not dropped: dropping 3,000 boxes one inside the other is a recursion too.
                std::mem::forget(node);
                shape
            })
            .expect("a thread")
            .join()
            .expect("walked without overflowing the stack");
        assert_eq!(walked, Ok(3001));
    }

    #[test]
    fn finite_values_anywhere_are_storable() {
        #[derive(serde::Serialize)]
        struct Order {
            total: f64,
            lines: Vec<(String, f32)>,
            big: u128,
            note: Option<f64>,
        }
        let order = Order {
            total: 12.5,
            lines: vec![("bun".into(), 1.5)],
            big: u128::MAX,
            note: None,
        };
        assert!(check_storable(&order).is_ok());
        assert!(check_storable(&json!({"a": [1, 2.5, null]})).is_ok());
    }

    /// The nesting of the JSON text: the most arrays and objects open at once.
    fn json_depth(text: &str) -> usize {
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0, false, false);
        for byte in text.bytes() {
            match (in_string, escaped, byte) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
                (false, _, b'[' | b'{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (false, _, b']' | b'}') => depth -= 1,
                _ => {}
            }
        }
        deepest
    }

    /// The walk's depth is the JSON's, for every way serde writes arrays and objects (enum
    /// variants wrap theirs in an object), and it sees every 128-bit integer.
    #[test]
    fn the_walk_measures_the_json_it_writes() {
        #[derive(serde::Serialize)]
        enum Node {
            Leaf,
            Wrapped(Box<Node>),
            Pair(Box<Node>, u8),
            Named { inner: Box<Node> },
            List(Vec<Node>),
            Wide(u128),
            Signed(i128),
        }
        #[derive(serde::Serialize)]
        struct Tuple(Box<Node>, Box<Node>);
        fn build(seed: u64, levels: u32) -> Node {
            if levels == 0 {
                return match seed % 3 {
                    0 => Node::Leaf,
                    1 => Node::Wide(u128::MAX),
                    _ => Node::Signed(-1),
                };
            }
            let inner = Box::new(build(seed / 7 + 1, levels - 1));
            match seed % 4 {
                0 => Node::Wrapped(inner),
                1 => Node::Pair(inner, 1),
                2 => Node::Named { inner },
                _ => Node::List(vec![Node::Leaf, *inner]),
            }
        }
        for seed in 0..300_u64 {
            let levels = u32::try_from(seed % 70).unwrap();
            let node = build(seed * 2_654_435_761, levels);
            let text = serde_json::to_string(&node).unwrap();
            let shape = check_storable(&node).unwrap();
            assert_eq!(shape.depth, json_depth(&text), "{text}");
            assert_eq!(
                shape.buffering_sensitive,
                text.contains("Wide") || text.contains("Signed")
            );
            let tuple = Tuple(Box::new(Node::Leaf), Box::new(node));
            let text = serde_json::to_string(&tuple).unwrap();
            assert_eq!(
                check_storable(&tuple).unwrap().depth,
                json_depth(&text),
                "{text}"
            );
        }
        let map = BTreeMap::from([("a", vec![json!({"b": [1]})])]);
        assert_eq!(check_storable(&map).unwrap().depth, 4);
        assert_eq!(check_storable(&5_u8).unwrap(), Shape::default());
        // Bytes are an array of numbers.
        struct Bytes;
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&[1, 2])
            }
        }
        let bytes = vec![vec![Bytes]];
        let text = serde_json::to_string(&bytes).unwrap();
        assert_eq!(check_storable(&bytes).unwrap().depth, json_depth(&text));
        // Map keys that are not strings are written as strings: sensitive to serde's buffering.
        assert!(
            check_storable(&BTreeMap::from([(7_u32, 1)]))
                .unwrap()
                .buffering_sensitive
        );
        assert!(
            check_storable(&BTreeMap::from([(true, 1)]))
                .unwrap()
                .buffering_sensitive
        );
        assert!(
            !check_storable(&BTreeMap::from([("7", 7_u32)]))
                .unwrap()
                .buffering_sensitive
        );
        assert!(
            !check_storable(&BTreeMap::from([('k', 7.5)]))
                .unwrap()
                .buffering_sensitive
        );
    }

    #[test]
    fn a_non_finite_float_anywhere_is_named() {
        let nested: BTreeMap<&str, Vec<Option<f64>>> =
            BTreeMap::from([("ratios", vec![Some(1.0), Some(f64::NAN)])]);
        let reason = check_storable(&nested).unwrap_err();
        assert!(reason.contains("NaN"), "{reason}");
        assert!(check_storable(&f32::INFINITY).unwrap_err().contains("inf"));
        assert!(check_storable(&(1, f64::NEG_INFINITY)).is_err());
    }
}
