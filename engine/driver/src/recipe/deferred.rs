//! A recipe block that is only typed after its templates are rendered.
//!
//! `size: "{{ vars.disk }}"` is a string in the file but a number once rendered, so blocks that
//! may hold templates are kept as raw JSON at load time and parsed into their Rust type per stage.
//! The schema still comes from that type (with templates allowed where a value could be one).

use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

pub struct Deferred<T> {
    pub raw: Json,
    _type: PhantomData<fn() -> T>,
}

impl<T> Deferred<T> {
    pub fn new(raw: Json) -> Self {
        Self {
            raw,
            _type: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Deferred<T> {
    /// Parse an already rendered value into the block's type.
    pub fn parse(rendered: Json) -> Result<T, serde_json::Error> {
        serde_json::from_value(rendered)
    }
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Self::new(self.raw.clone())
    }
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T> Default for Deferred<T> {
    fn default() -> Self {
        Self::new(Json::Object(Default::default()))
    }
}

impl<'de, T> Deserialize<'de> for Deferred<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(Json::deserialize(d)?))
    }
}

impl<T> Serialize for Deferred<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Deferred<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}
