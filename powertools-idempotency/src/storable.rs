//! Whether a response can be stored as JSON and read back as the same value.
//!
//! serde_json writes NaN and ±Infinity as `null`, so a response holding one would replay as
//! something else (or fail to parse at all for an `f64` field). This walks the response through
//! serde once, without allocating, and names the first value JSON cannot hold.

use std::fmt;

use serde::ser::{self, Serialize};

/// `Ok` when every float in `value` is finite; otherwise why the response cannot be stored.
pub(crate) fn check_storable<T: Serialize + ?Sized>(value: &T) -> Result<(), String> {
    value.serialize(FiniteCheck).map_err(|error| error.0)
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
    fn custom<T: fmt::Display>(message: T) -> Self {
        NotStorable(message.to_string())
    }
}

/// A serializer that writes nothing and refuses non-finite floats.
#[derive(Clone, Copy)]
struct FiniteCheck;

fn float(value: f64) -> Result<(), NotStorable> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(NotStorable(format!(
            "the response holds {value}, which JSON cannot represent (serde_json would store null)"
        )))
    }
}

macro_rules! accept {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, _value: $type) -> Result<(), NotStorable> { Ok(()) })*
    };
}

impl ser::Serializer for FiniteCheck {
    type Ok = ();
    type Error = NotStorable;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_f32(self, value: f32) -> Result<(), NotStorable> {
        float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), NotStorable> {
        float(value)
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
        _variant: &'static str,
    ) -> Result<(), NotStorable> {
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
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, NotStorable> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, NotStorable> {
        Ok(self)
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteCheck {
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

impl ser::SerializeMap for FiniteCheck {
    type Ok = ();
    type Error = NotStorable;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NotStorable> {
        key.serialize(*self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotStorable> {
        value.serialize(*self)
    }

    fn end(self) -> Result<(), NotStorable> {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteCheck {
            type Ok = ();
            type Error = NotStorable;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> Result<(), NotStorable> {
                value.serialize(*self)
            }

            fn end(self) -> Result<(), NotStorable> {
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
        assert_eq!(check_storable(&order), Ok(()));
        assert_eq!(check_storable(&json!({"a": [1, 2.5, null]})), Ok(()));
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
