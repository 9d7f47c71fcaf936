//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::customer::{
    Address, AddressType, Company, Consent, ContactRef, Customer, CustomerData, CustomerInput, CustomerType,
    EnrolledBy, MarketingConsent, Term,
};
use crate::domain::validate::FieldError;

use super::error::{ErrorBody, ErrorDetail};
use super::{auth, customers, health};

#[derive(OpenApi)]
#[openapi(
    info(title = "customers", description = "Customer records, following the Dintero Customers API (v1)."),
    paths(
        auth::issue_token, auth::jwks,
        customers::create_customer, customers::list_customers, customers::head_customers,
        customers::get_customer, customers::update_customer, customers::delete_customer,
        customers::change_customer_id,
        health::live, health::ready, health::metrics, health::openapi,
    ),
    components(schemas(
        Customer, CustomerData, CustomerInput, CustomerType, Address, AddressType, Company, Consent,
        ContactRef, EnrolledBy, MarketingConsent, Term, FieldError, ErrorBody, ErrorDetail,
        customers::ChangeCustomerId, auth::TokenRequest, auth::TokenResponse,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}
