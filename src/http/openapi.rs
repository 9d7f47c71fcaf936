//! The OpenAPI 3 document, generated from the handlers' annotations, and
//! the route that serves it.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::customer::{
    Address, AddressType, Company, Consent, ContactRef, Customer, CustomerData, CustomerInput, CustomerType,
    EnrolledBy, MarketingConsent, Term,
};
use crate::domain::events::Event;
use crate::domain::hooks::{
    Attempt, Delivery, DeliveryStatus, HookConfig, HookConfigInput, Subscription, SubscriptionInput,
};
use crate::domain::records::{
    ClearEventInput, ClearTokenEvents, EventInput, Tag, TagInput, Terms, TermsInput, Token, TokenDetail, TokenEvent,
    TokenEventRequest, TokenEvents, TokenInput, TokenRef,
};
use crate::domain::settings::{
    AttributeDefinition, AttributeType, AutoToken, AutoTokenType, AutoTokens, ChallengeType, CustomerIdFormat,
    EventExpiry, HeadSettings, MfaChallenge, MfaSettings, OobChannel, PhoneNumberValidation, PhoneVerification,
    Settings, TokenSettings, UserSettings, VerificationSettings,
};
use crate::domain::validate::FieldError;

use super::error::{ErrorBody, ErrorDetail};
use super::{auth, customers, events, health, hooks, settings, tags, tokens, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "customers", description = "Customer records, following the Dintero Customers API (v1)."),
    paths(
        auth::issue_token, auth::jwks,
        customers::create_customer, customers::list_customers, customers::head_customers,
        customers::get_customer, customers::update_customer, customers::delete_customer,
        customers::change_customer_id,
        settings::get_settings, settings::put_settings,
        settings::create_terms, settings::list_terms, settings::get_terms, settings::delete_terms,
        tags::list_tags, tags::create_tag, tags::delete_tag, tags::get_customer_tags, tags::set_customer_tags,
        tokens::list_tokens, tokens::add_token, tokens::delete_token,
        tokens::record_event, tokens::list_events, tokens::clear_events,
        events::list_events, events::customer_history,
        hooks::create_subscription, hooks::list_subscriptions, hooks::get_subscription, hooks::update_subscription,
        hooks::delete_subscription, hooks::ping, hooks::list_deliveries, hooks::redeliver,
        health::live, health::ready, health::metrics, openapi,
    ),
    components(schemas(
        Customer, CustomerData, CustomerInput, CustomerType, Address, AddressType, Company, Consent,
        ContactRef, EnrolledBy, MarketingConsent, Term, FieldError, ErrorBody, ErrorDetail,
        customers::ChangeCustomerId, customers::TypeParameter, auth::TokenRequest, auth::TokenResponse,
        Settings, UserSettings, HeadSettings, PhoneNumberValidation, CustomerIdFormat, AutoTokens, AutoToken,
        AutoTokenType, TokenSettings, EventExpiry, AttributeDefinition, AttributeType, MfaSettings, MfaChallenge,
        ChallengeType, OobChannel, VerificationSettings, PhoneVerification,
        Terms, TermsInput, Tag, TagInput, Token, TokenInput, TokenRef, EventInput, TokenEventRequest, TokenEvent,
        TokenDetail, TokenEvents, ClearTokenEvents, ClearEventInput, Event,
        Subscription, SubscriptionInput, HookConfig, HookConfigInput, Delivery, DeliveryStatus, Attempt,
    )),
    modifiers(&Security, &CommonErrors),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// The errors any account operation can answer, documented once instead of
/// on each handler: a bad path, query or header (400), credentials (401,
/// 403), limits (429) and an unavailable database (503); operations with a
/// body also 413 and 415.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build()
        };
        let common = [
            ("400", "invalid path, query, header or body"),
            ("401", "missing, invalid or expired credentials"),
            ("403", "the token does not allow this"),
            ("429", "rate limited; see Retry-After"),
            ("503", "the database is unavailable or the request took too long; see Retry-After"),
        ];
        let with_body = [("413", "the body is too large"), ("415", "the body must be application/json")];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/accounts/") {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.head];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let extra = if has_body { &with_body[..] } else { &[] };
                for (status, description) in common.iter().chain(extra) {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use utoipa::OpenApi;

    use super::ApiDoc;
    use crate::domain::customer::CustomerInput;

    /// Whether `body` passes the create rules.
    fn accepted(body: Value) -> bool {
        let input: CustomerInput = serde_json::from_value(body).unwrap();
        input.into_new(chrono::Utc::now()).is_ok()
    }

    /// A create body with `value` at `path` (dot-separated; a number picks
    /// the element of an array), beside what its type requires.
    fn body_with(path: &str, value: Value) -> Value {
        let mut body = json!({
            "type": "company", "company": {"bussiness_name": "Acme"},
            "addresses": [{"address_line": "Gate 1", "postal_place": "Oslo", "country": "NO"}],
            "enrolled_by": {"value": "shop"}, "term": {"id": "t", "accepted_at": "2026-01-01T00:00:00Z"},
        });
        let mut at = &mut body;
        let (parents, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
        for key in parents.split('.').filter(|k| !k.is_empty()) {
            at = match key.parse::<usize>() {
                Ok(index) => &mut at[index],
                Err(_) => &mut at[key],
            };
        }
        at[last] = value;
        body
    }

    #[test]
    fn request_schemas_state_the_length_limits_validation_enforces() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let fields = [
            ("CustomerInput", "customer_id", "customer_id"),
            ("CustomerInput", "first_name", "first_name"),
            ("CustomerInput", "last_name", "last_name"),
            ("CustomerInput", "status", "status"),
            ("CustomerInput", "favorite_store", "favorite_store"),
            ("CustomerInput", "gender", "gender"),
            ("EnrolledBy", "value", "enrolled_by.value"),
            ("EnrolledBy", "type", "enrolled_by.type"),
            ("Address", "address_line", "addresses.0.address_line"),
            ("Address", "address_line_2", "addresses.0.address_line_2"),
            ("Address", "postal_code", "addresses.0.postal_code"),
            ("Address", "postal_place", "addresses.0.postal_place"),
            ("Address", "custom_type", "addresses.0.custom_type"),
            ("Address", "comment", "addresses.0.comment"),
            ("Term", "id", "term.id"),
            ("Company", "organization_number", "company.organization_number"),
            ("Company", "bussiness_name", "company.bussiness_name"),
            ("Company", "department", "company.department"),
            ("Company", "industry", "company.industry"),
            ("Company", "website", "company.website"),
            ("Company", "number_of_employees", "company.number_of_employees"),
        ];
        assert!(accepted(body_with("first_name", json!("Ada"))), "the base body must pass");
        for (schema, property, path) in fields {
            let stated = &schemas[schema]["properties"][property];
            let max = stated["maxLength"].as_u64().unwrap_or_else(|| panic!("{schema}.{property}: no maxLength"));
            // Characters, not bytes — except where an index also bounds the
            // bytes, which the description then states.
            let in_bytes = stated["description"].as_str().is_some_and(|d| d.contains("bytes"));
            let at_most = (if in_bytes { "x" } else { "ø" }).repeat(max as usize);
            assert!(accepted(body_with(path, json!(at_most))), "{path}: {max} characters refused");
            assert!(!accepted(body_with(path, json!(at_most + "x"))), "{path}: {} characters taken", max + 1);
        }
        let phone = &schemas["CustomerInput"]["properties"]["phone_number"]["pattern"];
        assert_eq!(phone, "^\\+?[1-9][0-9]{1,14}$");
        for (number, valid) in [("+4791234567", true), ("4791234567", true), ("+0123", false), ("+1", false)] {
            assert_eq!(accepted(body_with("phone_number", json!(number))), valid, "{number}");
        }
        let latitude = &schemas["Address"]["properties"]["latitude"];
        assert_eq!((latitude["minimum"].as_f64(), latitude["maximum"].as_f64()), (Some(-90.0), Some(90.0)));
        assert!(!accepted(body_with("addresses.0.latitude", json!(90.5))));
        let longitude = &schemas["Address"]["properties"]["longitude"];
        assert_eq!((longitude["minimum"].as_f64(), longitude["maximum"].as_f64()), (Some(-180.0), Some(180.0)));
        assert!(!accepted(body_with("addresses.0.longitude", json!(-180.5))));
    }
}
