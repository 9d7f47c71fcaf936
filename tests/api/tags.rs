//! §5: account tags and customers' tags.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, ACCOUNT};

fn tags_url(app: &TestApp) -> String {
    app.url(&format!("/v1/accounts/{ACCOUNT}/customers/tags"))
}

both_backends! {
    async fn tags_are_created_assigned_filtered_and_deleted(app: &TestApp) {
        let vip = app.post(&tags_url(app), &json!({"tag": "vip", "metadata": {"colour": "gold"}})).await;
        assert_eq!(vip.status, StatusCode::OK, "{}", vip.body);
        let vip_id = vip.body["id"].as_str().unwrap().to_owned();
        let new = app.post(&tags_url(app), &json!({"tag": "new"})).await.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.post(&tags_url(app), &json!({"tag": "vip"})).await.code(), "duplicate_tag");
        let names: Vec<String> = app.get(&tags_url(app)).await.body.as_array().unwrap().iter()
            .map(|t| t["tag"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["new", "vip"]);

        app.create(json!({"customer_id": "c1"})).await;
        app.create(json!({"customer_id": "c2"})).await;
        let tags_of = |cid: &str| format!("{}/tags", app.user_url(cid));
        let set = app.put(&tags_of("c1"), &json!([vip_id, new, vip_id])).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
        assert_eq!(set.body.as_array().unwrap().len(), 2);
        app.put(&tags_of("c2"), &json!([new])).await;
        let unknown = app.put(&tags_of("c2"), &json!([uuid::Uuid::new_v4()])).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.get(&tags_of("c2")).await.body.as_array().unwrap().len(), 1, "a refused replace changes nothing");
        let not_array = app.put(&tags_of("c2"), &json!({"tags": []})).await;
        assert_eq!(not_array.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.put(&tags_of("nobody"), &json!([])).await.status, StatusCode::NOT_FOUND);

        assert_eq!(TestApp::ids(&app.list(&format!("tag_id={vip_id}")).await), ["c1"]);
        let mut with_new = TestApp::ids(&app.list(&format!("tag_id={new}")).await);
        with_new.sort();
        assert_eq!(with_new, ["c1", "c2"]);

        let deleted = app.delete(&format!("{}/{vip_id}", tags_url(app))).await;
        assert_eq!(deleted.body["tag"], "vip");
        assert!(TestApp::ids(&app.list(&format!("tag_id={vip_id}")).await).is_empty());
        let left: Vec<String> = app.get(&tags_of("c1")).await.body.as_array().unwrap().iter()
            .map(|t| t["tag"].as_str().unwrap().to_owned()).collect();
        assert_eq!(left, ["new"]);
        assert_eq!(app.delete(&format!("{}/{vip_id}", tags_url(app))).await.code(), "tag_not_found");
        let bad = app.get(&format!("{}?tag_id=not-a-uuid", app.users_url())).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }
}
