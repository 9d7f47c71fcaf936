//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::customer::{
    Address, AddressType, Company, Consent, ContactRef, Customer, CustomerData, CustomerInput, CustomerType,
    EnrolledBy, MarketingConsent, Term,
};
use crate::domain::records::{
    EventInput, Tag, TagInput, Terms, TermsInput, Token, TokenDetail, TokenEvent, TokenEventRequest, TokenInput,
    TokenRef,
};
use crate::domain::settings::{
    AttributeDefinition, AttributeType, AutoToken, AutoTokenType, AutoTokens, CustomerIdFormat, EventExpiry,
    HeadSettings, PhoneNumberValidation, Settings, TokenSettings, UserSettings,
};
use crate::domain::validate::FieldError;

use super::error::{ErrorBody, ErrorDetail};
use super::{auth, customers, health, settings, tags, tokens};

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
        health::live, health::ready, health::metrics, health::openapi,
    ),
    components(schemas(
        Customer, CustomerData, CustomerInput, CustomerType, Address, AddressType, Company, Consent,
        ContactRef, EnrolledBy, MarketingConsent, Term, FieldError, ErrorBody, ErrorDetail,
        customers::ChangeCustomerId, auth::TokenRequest, auth::TokenResponse,
        Settings, UserSettings, HeadSettings, PhoneNumberValidation, CustomerIdFormat, AutoTokens, AutoToken,
        AutoTokenType, TokenSettings, EventExpiry, AttributeDefinition, AttributeType,
        Terms, TermsInput, Tag, TagInput, Token, TokenInput, TokenRef, EventInput, TokenEventRequest, TokenEvent,
        TokenDetail,
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
