//! Appended keys as JSON values, with the floats JSON cannot hold written as their text.
//!
//! `serde_json::to_value` turns NaN and ±Infinity into `null`, without a word: a key appended
//! as `f64::NAN` would log as `null`, as if it had no value. A field of an event already logs
//! them as text (`"NaN"`, `"inf"`, `"-inf"`, Rust's `Display`), and so do appended keys, at any
//! depth, through this adaptor: it hands every call to the serializer it wraps, changing only
//! the floats that are not finite. Everything else comes out exactly as serde_json writes it
//! (the tests compare the two).

use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use serde_json::Value;

/// `value` as a JSON value, a non-finite float as its text; refused when it nests deeper than
/// [`MAX_VALUE_DEPTH`].
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, serde_json::Error> {
    let value = serde_json::to_value(Finite(value))?;
    if nests_deeper_than(&value, MAX_VALUE_DEPTH) {
        return Err(too_deep());
    }
    Ok(value)
}

/// The error of a value nested deeper than [`MAX_VALUE_DEPTH`], whichever check finds it (the
/// serializer's stack guard stops deeper values sooner, and named its own limit: found by an
/// attack from the docs).
fn too_deep<E: serde::ser::Error>() -> E {
    E::custom(format_args!(
        "the value nests deeper than {MAX_VALUE_DEPTH} levels: its line would be deeper than \
         JSON readers take"
    ))
}

pub(crate) use powertools_core::json_depth::{MAX_VALUE_DEPTH, nests_deeper_than};

/// A value serialized with its non-finite floats as text.
struct Finite<'a, T: ?Sized>(&'a T);

/// The deepest nesting an appended value may have: what serde_json reads back (a line nested
/// deeper is unreadable to the tools that read logs). Refused past it, before the recursion of
/// serializing it (and of writing and dropping the copy) overflows the stack: a value built in
/// code 10,000 levels deep aborted the process on a Tokio worker's 2 MiB stack (found by a
/// review).
pub(crate) const MAX_DEPTH: usize = 128;

thread_local! {
    /// How deep the value being serialized on this thread is, at the element serialized now.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<T: Serialize + ?Sized> Serialize for Finite<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Leaves a level when the element is serialized (or its serializer unwinds).
        struct Level;
        impl Drop for Level {
            fn drop(&mut self) {
                DEPTH.set(DEPTH.get().saturating_sub(1));
            }
        }
        let depth = DEPTH.get() + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        DEPTH.set(depth);
        let _level = Level;
        self.0.serialize(AsText(serializer))
    }
}

/// The wrapped serializer, with non-finite floats written as strings.
struct AsText<S>(S);

/// Whether serde_json's values hold integers beyond 64 bits: only where a crate in the build
/// turned on its `arbitrary_precision` (features unify across a build).
fn values_hold_128_bits() -> bool {
    static HOLD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOLD.get_or_init(|| serde_json::to_value(u128::MAX).is_ok())
}

/// One of the wrapped serializer's compound serializers, its elements wrapped in [`Finite`].
struct Compound<C>(C);

macro_rules! forward {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, value: $type) -> Result<S::Ok, S::Error> { self.0.$method(value) })*
    };
}

impl<S: Serializer> Serializer for AsText<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    // serde_json's values hold 64-bit integers only, and refused the rest ("number out of
    // range"), where a `tracing` field writes the number and Python writes any integer: beyond
    // 64 bits, the exact digits, as text (found by an attack from the docs), unless a crate in
    // the build turned on serde_json's `arbitrary_precision`, whose values hold the number.
    fn serialize_i128(self, value: i128) -> Result<S::Ok, S::Error> {
        match i64::try_from(value) {
            Ok(small) => self.0.serialize_i64(small),
            Err(_) if values_hold_128_bits() => self.0.serialize_i128(value),
            Err(_) => self.0.serialize_str(&value.to_string()),
        }
    }

    fn serialize_u128(self, value: u128) -> Result<S::Ok, S::Error> {
        match u64::try_from(value) {
            Ok(small) => self.0.serialize_u64(small),
            Err(_) if values_hold_128_bits() => self.0.serialize_u128(value),
            Err(_) => self.0.serialize_str(&value.to_string()),
        }
    }

    fn serialize_f32(self, value: f32) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            self.0.serialize_f32(value)
        } else {
            self.0.collect_str(&value)
        }
    }

    fn serialize_f64(self, value: f64) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            self.0.serialize_f64(value)
        } else {
            self.0.collect_str(&value)
        }
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Finite(value))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Finite(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Finite(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compound)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound traits whose elements are plain values (sequences and tuples of any kind).
macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl<C: $trait> $trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.0.$method(&Finite(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
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

/// The compound traits whose elements are named fields.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl<C: $trait> $trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                self.0.serialize_field(key, &Finite(value))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

impl<C: SerializeMap> SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Finite(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Finite(value))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), C::Error> {
        self.0.serialize_entry(&Finite(key), &Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::{Value, json};

    use super::{MAX_VALUE_DEPTH, nests_deeper_than, to_value};

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(f64);

    #[derive(Serialize)]
    struct Pair(f32, Option<f64>);

    #[derive(Serialize)]
    enum Shape {
        Empty,
        Ratio(f64),
        Point(f64, f32),
        Box { width: f64, height: Option<f32> },
    }

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        Reading { value: f64 },
    }

    #[derive(Serialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: i128,
        unsigned: u128,
        letter: char,
        text: &'static str,
        #[serde(with = "as_bytes")]
        bytes: Vec<u8>,
        none: Option<f64>,
        some: Option<f64>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        tagged: Tagged,
        tuple: (f64, &'static str, f32),
        by_name: BTreeMap<String, f64>,
        by_number: BTreeMap<u32, Vec<f64>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(flatten)]
        flattened: BTreeMap<String, f64>,
    }

    mod as_bytes {
        pub(super) fn serialize<S: serde::Serializer>(
            bytes: &[u8],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(bytes)
        }
    }

    fn everything(x: f64, y: f32) -> Everything {
        Everything {
            flag: true,
            small: -3,
            big: -5,
            unsigned: 7,
            letter: 'ß',
            text: "a \"quoted\" ✓",
            bytes: vec![0, 255],
            none: None,
            some: Some(x),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(x),
            pair: Pair(y, Some(x)),
            shapes: vec![
                Shape::Empty,
                Shape::Ratio(x),
                Shape::Point(x, y),
                Shape::Box {
                    width: x,
                    height: Some(y),
                },
                Shape::Box {
                    width: x,
                    height: None,
                },
            ],
            tagged: Tagged::Reading { value: x },
            tuple: (x, "t", y),
            by_name: BTreeMap::from([("k".to_owned(), x)]),
            by_number: BTreeMap::from([(4, vec![x, 1.5])]),
            skipped: None,
            flattened: BTreeMap::from([("flat".to_owned(), x)]),
        }
    }

    #[test]
    fn finite_values_of_every_shape_come_out_as_serde_json_writes_them() {
        for (x, y) in [
            (0.0, 0.0),
            (-1.25, 3.5),
            (f64::MAX, f32::MIN_POSITIVE),
            (1e-300, -0.0),
        ] {
            let value = everything(x, y);
            assert_eq!(
                to_value(&value).expect("serializes"),
                serde_json::to_value(&value).expect("serializes"),
                "{x} {y}"
            );
        }
    }

    #[test]
    fn a_value_nested_deeper_than_json_reads_is_refused_without_overflowing_the_stack() {
        // Built without recursion; 10,000 levels overflowed a 2 MiB stack (a Tokio worker's).
        let mut deep = Value::Null;
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        let refused = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let refused = to_value(&deep).map_err(|error| error.to_string());
                // Dropped without recursion too, so that only `to_value` is measured.
                let mut deep = deep;
                while let Value::Array(mut items) = deep {
                    deep = items.pop().unwrap_or(Value::Null);
                }
                refused
            })
            .unwrap()
            .join()
            .unwrap();
        // The limit the docs give, whichever check stops it (the serializer's stack guard said
        // 128: found by an attack from the docs).
        let error = refused.unwrap_err();
        assert!(error.contains("deeper than 126 levels"), "{error}");
        let error = to_value(&nested(128, Value::Null)).unwrap_err().to_string();
        assert!(error.contains("deeper than 126 levels"), "{error}");
        // 126 levels are kept (with the line's own object, the 127 serde_json reads), and the
        // counter starts again at zero for the next value.
        let kept = nested(126, Value::Null);
        assert_eq!(to_value(&kept).unwrap(), kept);
        assert_eq!(to_value(&kept).unwrap(), kept);
        let error = to_value(&nested(127, Value::Null)).unwrap_err().to_string();
        assert!(error.contains("deeper than 126 levels"), "{error}");
    }

    /// `inner` in `levels` arrays, built without recursion.
    fn nested(levels: usize, inner: Value) -> Value {
        (0..levels).fold(inner, |value, _| Value::Array(vec![value]))
    }

    /// The depth is counted as serde_json counts it when it reads: every array and object, an
    /// empty one too, whichever member holds the deepest, an enum variant's object included.
    #[test]
    fn the_depth_is_counted_as_json_readers_count_it() {
        #[derive(Serialize)]
        enum Wrapped {
            Tuple(Value, u8),
        }
        for (value, depth) in [
            (json!(1), 0),
            (json!([]), 1),
            (json!({}), 1),
            (nested(3, json!([])), 4),
            (json!({"a": 1, "b": {"c": [[], [{}]]}, "d": []}), 5),
            (json!([1, [2, [3]], [[[[]]]], {}]), 5),
            (
                serde_json::to_value(Wrapped::Tuple(nested(2, json!(1)), 0)).unwrap(),
                4,
            ),
        ] {
            assert!(!nests_deeper_than(&value, depth), "{value} within {depth}");
            if depth > 0 {
                assert!(
                    nests_deeper_than(&value, depth - 1),
                    "{value} deeper than {}",
                    depth - 1
                );
            }
            // What serde_json reads back: a document 127 deep, not 128.
            let text = value.to_string();
            for (wrap, reads) in [(127 - depth, true), (128 - depth, false)] {
                let line = format!("{}{text}{}", "[".repeat(wrap), "]".repeat(wrap));
                assert_eq!(
                    serde_json::from_str::<Value>(&line).is_ok(),
                    reads,
                    "{value} in {wrap} arrays"
                );
            }
        }
        // An enum variant's object is a level: refused past the limit like an array.
        let deep = Wrapped::Tuple(nested(MAX_VALUE_DEPTH - 1, json!(1)), 0);
        assert!(to_value(&deep).is_err());
        let fits = Wrapped::Tuple(nested(MAX_VALUE_DEPTH - 2, json!(1)), 0);
        assert!(to_value(&fits).is_ok());
    }

    #[test]
    fn non_finite_floats_are_their_text_at_any_depth() {
        let value = to_value(&everything(f64::NAN, f32::NEG_INFINITY)).expect("serializes");
        assert_eq!(value["some"], "NaN");
        assert_eq!(value["newtype"], "NaN");
        assert_eq!(value["pair"], json!(["-inf", "NaN"]));
        assert_eq!(value["shapes"][1], json!({"Ratio": "NaN"}));
        assert_eq!(value["shapes"][2], json!({"Point": ["NaN", "-inf"]}));
        assert_eq!(
            value["shapes"][3],
            json!({"Box": {"width": "NaN", "height": "-inf"}})
        );
        assert_eq!(value["tagged"], json!({"kind": "Reading", "value": "NaN"}));
        assert_eq!(value["tuple"], json!(["NaN", "t", "-inf"]));
        assert_eq!(value["by_name"], json!({"k": "NaN"}));
        assert_eq!(value["by_number"], json!({"4": ["NaN", 1.5]}));
        assert_eq!(value["flat"], "NaN");
        assert_eq!(to_value(&f64::INFINITY).expect("serializes"), "inf");
        assert_eq!(to_value(&f32::NAN).expect("serializes"), "NaN");
        // What serde_json refuses, this refuses too.
        assert!(to_value(&BTreeMap::from([(vec![1], 1)])).is_err());
    }

    /// A 128-bit integer is written exactly: as a number within 64 bits (what serde_json's
    /// values hold), as its digits beyond them, where serde_json refused it and the key was not
    /// written at all (found by an attack from the docs: a `tracing` field writes it, and Python
    /// writes any integer).
    #[test]
    fn a_128_bit_integer_is_written_exactly() {
        assert_eq!(to_value(&u128::MAX).unwrap(), json!(u128::MAX.to_string()));
        assert_eq!(to_value(&i128::MIN).unwrap(), json!(i128::MIN.to_string()));
        let just_past = u128::from(u64::MAX) + 1;
        assert_eq!(to_value(&just_past).unwrap(), json!("18446744073709551616"));
        assert_eq!(to_value(&u128::from(u64::MAX)).unwrap(), json!(u64::MAX));
        assert_eq!(to_value(&i128::from(i64::MIN)).unwrap(), json!(i64::MIN));
        assert_eq!(to_value(&-1_i128).unwrap(), json!(-1));
        assert_eq!(
            to_value(&[Some(u128::MAX), None]).unwrap(),
            json!([u128::MAX.to_string(), null])
        );
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_comes_out_unchanged(value in values()) {
            prop_assert_eq!(to_value(&value).expect("serializes"), value);
        }
    }
}
