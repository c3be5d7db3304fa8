//! The resource's `service.name` is the Powertools service, whatever `OTEL_SERVICE_NAME` says,
//! and `OTEL_RESOURCE_ATTRIBUTES` (read by the tracer's builder, from the process or the `Env`
//! it is given) adds its keys, percent-decoded, under the tracer's own, as the README says. The SDK reads the process's environment,
//! which a test cannot set without `unsafe`: the test runs itself again as a child process with
//! the variables set.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use opentelemetry::{Key, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use powertools_tracing::Tracer;

/// Keeps the resource it is given.
#[derive(Clone, Default, Debug)]
struct KeepsResource(Arc<Mutex<Option<Resource>>>);

impl SpanExporter for KeepsResource {
    async fn export(&self, _batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.0.lock().unwrap() = Some(resource.clone());
    }
}

const CHILD: &str = "POWERTOOLS_TEST_RESOURCE_CHILD";

/// Whether this is the child process of the test `name`; in the parent, runs that test again
/// as a child with `variables` set (and the variables that turn tracing off removed), and
/// checks that it passed.
fn in_child_of(name: &str, variables: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    powertools_core::testing::rerun_in_child(name, CHILD, |command| {
        command
            .envs(variables.iter().copied())
            .env_remove("POWERTOOLS_TRACE_DISABLED")
            .env_remove("POWERTOOLS_DEV")
    });
    false
}

#[test]
fn the_service_is_powertools_and_otel_resource_attributes_add_under_the_tracer_s_keys() {
    if !in_child_of(
        "the_service_is_powertools_and_otel_resource_attributes_add_under_the_tracer_s_keys",
        &[
            ("POWERTOOLS_SERVICE_NAME", "orders"),
            ("OTEL_SERVICE_NAME", "otel-orders"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=bakery,service.name=attr-orders,\
                 cloud.region=us-east-1,faas.name=other",
            ),
        ],
    ) {
        return;
    }
    let kept = KeepsResource::default();
    let _tracer = Tracer::builder()
        .queued_exporter(kept.clone())
        .build()
        .unwrap();
    let resource = kept.0.lock().unwrap().clone().unwrap();
    let value = |key: &'static str| resource.get(&Key::from_static_str(key));
    assert_eq!(value("service.name"), Some(Value::from("orders")));
    assert_eq!(value("cloud.region"), Some(Value::from("eu-west-1")));
    assert_eq!(value("faas.name"), Some(Value::from("orders-api")));
    assert_eq!(value("deployment.environment"), Some(Value::from("prod")));
    assert_eq!(value("team"), Some(Value::from("bakery")));
}

/// A tracer given an `Env` of its own reads `OTEL_RESOURCE_ATTRIBUTES` from it alone: the SDK
/// read the process's too, undecoded and unchecked (`leak=raw%20v` exported as it was, `c`
/// dropped without a word; found by a review).
#[test]
fn a_tracer_given_its_own_env_reads_no_resource_attributes_from_the_process() {
    if !in_child_of(
        "a_tracer_given_its_own_env_reads_no_resource_attributes_from_the_process",
        &[("OTEL_RESOURCE_ATTRIBUTES", "leak=raw%20v,c")],
    ) {
        return;
    }
    let kept = KeepsResource::default();
    let _tracer = Tracer::builder()
        .service("orders")
        .env(powertools_core::env::Env::from_pairs([(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=bakery%20one",
        )]))
        .queued_exporter(kept.clone())
        .build()
        .unwrap();
    let resource = kept.0.lock().unwrap().clone().unwrap();
    let value = |key: &'static str| resource.get(&Key::from_static_str(key));
    assert_eq!(value("leak"), None);
    assert_eq!(value("team"), Some(Value::from("bakery one")));
    assert_eq!(value("service.name"), Some(Value::from("orders")));
    assert!(
        value("telemetry.sdk.name").is_some(),
        "the SDK's own attributes stay"
    );
}
