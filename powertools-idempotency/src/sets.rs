//! Key data with hash sets in it, serialized the same way for the same set.
//!
//! A `HashSet` serializes its elements in its own iteration order, which differs between two
//! sets of the same elements (each has its own random hasher): two copies of one event keyed
//! apart and ran the handler twice, and a genuine duplicate with a set as validation data was
//! refused as a mismatch (found by an attack from the docs). Powertools for Python hashes the
//! raw event, in which a set cannot be (JSON has none). [`to_value`] is `serde_json::to_value`
//! with the elements of every hash set sorted by their canonical JSON (as the key is written),
//! at any depth: an adapter around serde_json's serializer that sees each collection's Rust type
//! where serde's `Serialize` for `HashSet` hands it over (`Serializer::collect_seq`), and
//! delegates everything else unchanged. A set with the same elements then gives the same key;
//! a list (`Vec`, a slice, a `BTreeSet`, an `IndexSet`, a list of sets) keeps its order.
//!
//! Where serde buffers a value before it serializes it (the fields of an enum variant under
//! `#[serde(flatten)]`, or of an enum inside an internally tagged enum's newtype variant), a
//! set reaches serde's own buffer, not this adapter, and keeps its iteration order: key data
//! of those shapes holds sets as `BTreeSet`s (a review found it).

use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

/// `value` as `serde_json::to_value` gives it, with the elements of every hash set sorted by
/// their canonical JSON.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, serde_json::Error> {
    SetsSorted(value).serialize(serde_json::value::Serializer)
}

/// Whether `I`, a collection serde hands to `collect_seq`, is a hash set (`std`'s or
/// hashbrown's, or a reference to one), told by the start of its type's name:
/// `std::any::type_name` is not guaranteed to stay the same across compilers, so a name that
/// changes form would keep a set's order again, as before, never reorder a list. (`BTreeSet`
/// and `IndexSet` iterate in an order of their own data.)
fn is_hash_set<I>() -> bool {
    // The collection itself, not its elements: `Vec<HashSet<…>>` is a list (a review found a
    // list of sets sorted, so two lists in other orders keyed alike).
    let mut name = std::any::type_name::<I>();
    while let Some(rest) = name.strip_prefix('&') {
        name = rest.strip_prefix("mut ").unwrap_or(rest);
    }
    [
        "std::collections::hash::set::HashSet<",
        "hashbrown::set::HashSet<",
    ]
    .iter()
    .any(|set| name.starts_with(set))
}

/// `T`, serialized through [`Sorting`].
struct SetsSorted<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for SetsSorted<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Sorting(serializer))
    }
}

/// A serializer (or one of its compound serializers) that hands every value to the one it wraps
/// through [`SetsSorted`], and sorts hash sets.
struct Sorting<S>(S);

impl<S: Serializer> Serializer for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Sorting<S::SerializeSeq>;
    type SerializeTuple = Sorting<S::SerializeTuple>;
    type SerializeTupleStruct = Sorting<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Sorting<S::SerializeTupleVariant>;
    type SerializeMap = Sorting<S::SerializeMap>;
    type SerializeStruct = Sorting<S::SerializeStruct>;
    type SerializeStructVariant = Sorting<S::SerializeStructVariant>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.0.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.0.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.0.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.0.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.0.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.0.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.0.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.0.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.0.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.0.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.0.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.0.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.0.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.0.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.0.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&SetsSorted(value))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
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
        self.0.serialize_newtype_struct(name, &SetsSorted(value))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &SetsSorted(value))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Sorting)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Sorting)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Sorting)
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
            .map(Sorting)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Sorting)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Sorting)
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
            .map(Sorting)
    }

    fn collect_seq<I>(self, iter: I) -> Result<S::Ok, S::Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if is_hash_set::<I>() {
            let mut elements = iter
                .into_iter()
                .map(|element| {
                    let value = to_value(&element).map_err(ser::Error::custom)?;
                    Ok((crate::key::key_json(&value), value))
                })
                .collect::<Result<Vec<(String, Value)>, S::Error>>()?;
            elements.sort_by(|(a, _), (b, _)| a.cmp(b));
            return self
                .0
                .collect_seq(elements.into_iter().map(|(_, value)| value));
        }
        // serde's own default, through this adapter.
        let iter = iter.into_iter();
        let (lower, upper) = iter.size_hint();
        let len = (upper == Some(lower)).then_some(lower);
        let mut sequence = ser::Serializer::serialize_seq(self, len)?;
        for element in iter {
            ser::SerializeSeq::serialize_element(&mut sequence, &element)?;
        }
        ser::SerializeSeq::end(sequence)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<S: ser::SerializeSeq> ser::SerializeSeq for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_element(&SetsSorted(value))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeTuple> ser::SerializeTuple for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_element(&SetsSorted(value))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_field(&SetsSorted(value))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_field(&SetsSorted(value))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeMap> ser::SerializeMap for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&SetsSorted(key))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&SetsSorted(value))
    }
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), S::Error> {
        self.0.serialize_entry(&SetsSorted(key), &SetsSorted(value))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeStruct> ser::SerializeStruct for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, &SetsSorted(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeStructVariant> ser::SerializeStructVariant for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, &SetsSorted(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use serde::Serialize;
    use serde_json::{Value, json};

    use super::to_value;

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, String),
        Struct { a: i64, b: Option<f64> },
    }

    #[derive(Serialize)]
    struct Newtype(Vec<u8>);

    #[derive(Serialize)]
    struct Tuple(i8, char, bool);

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        One { x: u16 },
    }

    #[derive(Serialize)]
    struct Everything {
        unit: (),
        none: Option<u8>,
        some: Option<&'static str>,
        shapes: Vec<Shape>,
        newtype: Newtype,
        tuple: Tuple,
        tagged: Tagged,
        integer_keys: BTreeMap<u32, &'static str>,
        bytes: serde_bytes_like::Bytes,
        big: u64,
        negative: i64,
        float: f32,
        list: Vec<&'static str>,
        ordered_set: BTreeSet<i32>,
        #[serde(flatten)]
        flattened: BTreeMap<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        json: Value,
    }

    mod serde_bytes_like {
        /// Serialized with `serialize_bytes`.
        pub(super) struct Bytes(pub(super) Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    /// The adapter changes nothing but hash sets: every other shape serde and serde_json have
    /// comes out as `serde_json::to_value` gives it (a differential test against the library).
    #[test]
    fn without_hash_sets_the_value_is_serde_json_s() {
        let everything = Everything {
            unit: (),
            none: None,
            some: Some("é\u{2028}"),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(1, "t".into()),
                Shape::Struct {
                    a: -3,
                    b: Some(0.5),
                },
                Shape::Struct { a: 0, b: None },
            ],
            newtype: Newtype(vec![1, 2]),
            tuple: Tuple(-1, 'c', true),
            tagged: Tagged::One { x: 9 },
            integer_keys: BTreeMap::from([(2, "b"), (10, "a")]),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            big: u64::MAX,
            negative: i64::MIN,
            float: 0.1,
            list: vec!["z", "a", "m"],
            ordered_set: BTreeSet::from([3, -1, 2]),
            flattened: BTreeMap::from([("extra".to_owned(), json!({"deep": [3, 2, 1]}))]),
            skipped: None,
            json: json!({"b": [1, {"c": null}], "a": 1.5e300}),
        };
        assert_eq!(
            to_value(&everything).unwrap(),
            serde_json::to_value(&everything).unwrap()
        );
        let map: HashMap<String, Vec<u8>> = HashMap::from([("k".to_owned(), vec![2, 1])]);
        assert_eq!(to_value(&map).unwrap(), serde_json::to_value(&map).unwrap());
        assert_eq!(
            to_value(&u128::MAX).unwrap_err().to_string(),
            serde_json::to_value(u128::MAX).unwrap_err().to_string()
        );
    }

    /// Two hash sets of the same elements, whatever their iteration orders (each its own random
    /// hasher, and inserted in other orders), at any depth: one value.
    #[test]
    fn hash_sets_of_the_same_elements_give_one_value() {
        #[derive(Serialize)]
        struct Order {
            coupons: HashSet<String>,
            lines: Vec<HashSet<u32>>,
            by_shop: HashMap<String, HashSet<(u8, String)>>,
        }
        let order = |reversed: bool| {
            let mut coupons: Vec<String> = (0..50).map(|n| format!("c-{n}")).collect();
            let mut numbers: Vec<u32> = (0..50).collect();
            if reversed {
                coupons.reverse();
                numbers.reverse();
            }
            Order {
                coupons: coupons.into_iter().collect(),
                lines: vec![numbers.iter().copied().collect()],
                by_shop: HashMap::from([(
                    "lyon".to_owned(),
                    numbers.iter().map(|n| (*n as u8, n.to_string())).collect(),
                )]),
            }
        };
        let first = to_value(&order(false)).unwrap();
        for reversed in [false, true, false, true] {
            assert_eq!(to_value(&order(reversed)).unwrap(), first);
        }
        let coupons = first["coupons"].as_array().unwrap();
        assert_eq!(coupons.len(), 50);
        // Sorted by canonical JSON: as text.
        let texts: Vec<String> = coupons.iter().map(crate::key::key_json).collect();
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]));
        // A list keeps its order; a set's elements stay the same elements.
        assert_eq!(to_value(&vec![3, 1, 2]).unwrap(), json!([3, 1, 2]));
        let set: HashSet<i32> = HashSet::from([3, 1, 2]);
        assert_eq!(to_value(&set).unwrap(), json!([1, 2, 3]));
    }

    /// (Found by a review.) `is_hash_set` asked whether the collection's type name contained
    /// `HashSet<`, and a `Vec<HashSet<_>>` (or `&[Option<HashSet<_>>]`, …) has it in its element
    /// type: the list itself was sorted. Two lists in different orders then key
    /// alike (one event replays another's response), and lists whose sets were all `None` or
    /// single elements, which keyed stably before, now key differently (orphaned records).
    #[test]
    fn review_a_list_of_hash_sets_keeps_its_order() {
        let lines: Vec<HashSet<&str>> = vec![HashSet::from(["b"]), HashSet::from(["a"])];
        assert_eq!(to_value(&lines).unwrap(), json!([["b"], ["a"]]));
    }

    /// (Found by a review.) The same, for data whose key was stable before (no set of two elements): its
    /// key changes, so records stored before this change are orphaned (the CHANGELOG says keys
    /// of data without hash sets do not change; this list's sets are never more than one
    /// element, which serialized the same way every time).
    #[test]
    fn review_a_list_of_optional_singleton_sets_keys_as_before() {
        let optional: Vec<Option<HashSet<u8>>> = vec![None, Some(HashSet::from([2]))];
        assert_eq!(
            to_value(&optional).unwrap(),
            serde_json::to_value(&optional).unwrap(),
            "no set with two elements here: the value must be serde_json's"
        );
    }
}
