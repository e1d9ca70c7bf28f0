//! The report against the demo origin: scores, verdicts and errors.

use super::report::{check_url, Thresholds, Verdict};
use meridian_demo::{DemoOptions, Identity};
use std::time::Duration;

async fn demo(processing: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = meridian_demo::router(DemoOptions {
        identity: Identity {
            region: "r".into(),
            az: "r-a".into(),
            instance: "i".into(),
        },
        processing_time: processing,
        database: None,
        quote_cache: None,
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_healthy_origin_scores_100() {
    let url = demo(Duration::ZERO).await;
    let r = check_url(&url, &Thresholds::default(), None).await.unwrap();
    assert_eq!(r.overall, Verdict::Healthy, "{r:#?}");
    assert_eq!(r.score, 100.0);
    let names: Vec<&str> = r.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["health", "detailed_health", "graphql", "metrics"]);
    assert!(r
        .components
        .iter()
        .all(|c| c.response_ms.is_some() && c.status_code == Some(200)));
    assert!(r.passed());
}

#[tokio::test]
async fn slow_components_are_degraded_with_a_recommendation() {
    // GraphQL pays the processing time; health endpoints do not.
    let url = demo(Duration::from_millis(150)).await;
    let th = Thresholds {
        slow: Duration::from_millis(100),
        ..Default::default()
    };
    let r = check_url(&url, &th, None).await.unwrap();
    let gql = r.components.iter().find(|c| c.name == "graphql").unwrap();
    assert_eq!(gql.verdict, Verdict::Degraded, "{gql:?}");
    assert_eq!(r.overall, Verdict::Degraded);
    assert_eq!(r.score, 87.5);
    assert!(r.passed(), "degraded is not a failure");
    assert!(
        r.recommendations.iter().any(|t| t.contains("slow")),
        "{:?}",
        r.recommendations
    );
}

#[tokio::test]
async fn wrong_urls_are_clear_errors() {
    let th = Thresholds::default();
    assert!(check_url("https://127.0.0.1:1", &th, None)
        .await
        .unwrap_err()
        .to_string()
        .contains("https"));
    assert!(check_url("ftp://x", &th, None)
        .await
        .unwrap_err()
        .to_string()
        .contains("http://"));
}
