//! Unit tests of `reject`.

use super::*;
use http::header::CONTENT_TYPE;

/// One of each variant. `ordinal` is an exhaustive match, so a new variant does not
/// compile until it is numbered, and the test then fails until it has an example row.
fn ordinal(rejection: &Rejection) -> usize {
    match rejection {
        Rejection::InvalidPath(_) => 0,
        Rejection::UriTooLong { .. } => 1,
        Rejection::HeadersTooLarge { .. } => 2,
        Rejection::RouteNotFound => 3,
        Rejection::MethodNotAllowed { .. } => 4,
        Rejection::CredentialsMissing => 5,
        Rejection::InvalidToken => 6,
        Rejection::TokenExpired => 7,
        Rejection::InvalidApiKey => 8,
        Rejection::Overloaded => 9,
        Rejection::OperationNotAllowed => 10,
        Rejection::InsufficientScope { .. } => 11,
        Rejection::RateLimited { .. } => 12,
        Rejection::InvalidParameters(_) => 13,
        Rejection::UnsupportedMediaType { .. } => 14,
        Rejection::BodyRequired => 15,
        Rejection::UnexpectedBody => 16,
        Rejection::InvalidJson(_) => 17,
        Rejection::BodySchema(_) => 18,
        Rejection::BodyTooLarge { .. } => 19,
        Rejection::BodyTimeout => 20,
        Rejection::BodyUnreadable => 21,
        Rejection::UpstreamUnavailable => 22,
        Rejection::UpstreamTimeout => 23,
        Rejection::Internal(_) => 24,
        Rejection::QuotaExceeded(_) => 25,
        Rejection::LimitStoreUnavailable => 26,
        Rejection::KeyStoreStale => 27,
        Rejection::InvalidBearerKey => 28,
        Rejection::ModelNotAllowed => 29,
        Rejection::MaxTokensExceeded { .. } => 30,
        Rejection::TokenBudgetExceeded { .. } => 31,
        Rejection::TooManyStreams { .. } => 32,
        Rejection::InvalidLlmRequest(_) => 33,
        Rejection::UpstreamExceededMaxTokens { .. } => 34,
        Rejection::InvalidHost(_) => 35,
        Rejection::BodiesOverloaded => 36,
        Rejection::InvalidGrpcMessage(_) => 37,
        Rejection::GrpcMessageTooLarge { .. } => 38,
        Rejection::GrpcMessageSchema { .. } => 39,
        Rejection::GrpcEncodingUnsupported => 40,
        Rejection::UpstreamResponseInvalid(_) => 41,
        Rejection::UpstreamError { .. } => 42,
    }
}
const VARIANTS: usize = 43;

fn quota_spent() -> QuotaUsage {
    QuotaUsage {
        limit: 100,
        remaining: 0,
        reset: 3600,
        window: 86_400,
    }
}

#[test]
fn a_spent_quota_says_when_it_resets_in_retry_after_and_the_ratelimit_fields() {
    let response =
        Rejection::QuotaExceeded(quota_spent()).into_response("r1", super::Audience::Any);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("retry-after"), "3600");
    assert_eq!(header("ratelimit-limit"), "100");
    assert_eq!(header("ratelimit-remaining"), "0");
    assert_eq!(header("ratelimit-reset"), "3600");
    assert_eq!(header("ratelimit-policy"), "100;w=86400");
    assert_eq!(
        header("x-should-retry"),
        "false",
        "an hour is not worth a client's wait"
    );
    let unavailable = Rejection::LimitStoreUnavailable.into_response("r2", super::Audience::Any);
    assert_eq!(unavailable.headers()["retry-after"], "1");
    assert!(!unavailable.headers().contains_key("x-should-retry"));
}

#[test]
fn an_llm_operations_refusal_also_carries_openais_error_object() {
    let body = |audience| {
        let errors = vec![super::FieldError {
            location: "body",
            pointer: "/temperature".into(),
            message: "the value is greater than the maximum of 2".into(),
        }];
        let response = Rejection::BodySchema(errors).into_response("r1", audience);
        serde_json::from_slice::<serde_json::Value>(response.body()).unwrap()
    };
    let openai = body(super::Audience::OpenAi);
    let sentence = "the request body does not match its schema: /temperature: the value is \
                    greater than the maximum of 2";
    assert_eq!(openai["detail"], sentence);
    assert_eq!(openai["message"], sentence);
    assert_eq!(
        openai["error"],
        serde_json::json!({"message": sentence, "type": "invalid_request_error",
            "code": "body_schema", "param": "/temperature"})
    );
    let plain = body(super::Audience::Any);
    assert_eq!(plain["message"], sentence);
    assert!(plain.get("error").is_none());
}

/// What a client and a dashboard see, per variant; the challenge a 401/403 carries.
/// Changing a row is an API change.
#[test]
#[allow(clippy::too_many_lines)] // one row per variant
fn each_rejection_has_a_fixed_status_code_stage_and_challenge() {
    let scope = || "predict".to_owned();
    let table: Vec<(Rejection, u16, &str, &str, Option<&str>)> = vec![
        (
            Rejection::InvalidPath(PathProblem::DotSegment),
            400,
            "invalid_path",
            "frame",
            None,
        ),
        (
            Rejection::UriTooLong { limit: 8 },
            414,
            "uri_too_long",
            "frame",
            None,
        ),
        (
            Rejection::HeadersTooLarge { limit: 8 },
            431,
            "headers_too_large",
            "frame",
            None,
        ),
        (
            Rejection::RouteNotFound,
            404,
            "route_not_found",
            "route",
            None,
        ),
        (
            Rejection::MethodNotAllowed {
                allow: HeaderValue::from_static("GET"),
            },
            405,
            "method_not_allowed",
            "route",
            None,
        ),
        (
            Rejection::CredentialsMissing,
            401,
            "credentials_missing",
            "authenticate",
            Some("Bearer realm"),
        ),
        (
            Rejection::InvalidToken,
            401,
            "invalid_token",
            "authenticate",
            Some("invalid_token"),
        ),
        (
            Rejection::TokenExpired,
            401,
            "token_expired",
            "authenticate",
            Some("has expired"),
        ),
        (
            Rejection::InvalidApiKey,
            401,
            "invalid_api_key",
            "authenticate",
            Some("ApiKey realm"),
        ),
        (
            Rejection::Overloaded,
            503,
            "overloaded",
            "authenticate",
            None,
        ),
        (
            Rejection::BodiesOverloaded,
            503,
            "overloaded",
            "validate",
            None,
        ),
        (
            Rejection::OperationNotAllowed,
            403,
            "operation_not_allowed",
            "authorize",
            None,
        ),
        (
            Rejection::InsufficientScope {
                scope: scope(),
                bearer: true,
            },
            403,
            "insufficient_scope",
            "authorize",
            Some("insufficient_scope"),
        ),
        (
            Rejection::RateLimited {
                retry_after: 2,
                quota: None,
            },
            429,
            "rate_limited",
            "limit",
            None,
        ),
        (
            Rejection::QuotaExceeded(quota_spent()),
            429,
            "quota_exceeded",
            "limit",
            None,
        ),
        (
            Rejection::LimitStoreUnavailable,
            503,
            "limit_store_unavailable",
            "limit",
            None,
        ),
        (
            Rejection::InvalidBearerKey,
            401,
            "invalid_api_key",
            "authenticate",
            Some(r#"Bearer realm="moat", error="invalid_token""#),
        ),
        (
            Rejection::KeyStoreStale,
            503,
            "key_store_stale",
            "authenticate",
            None,
        ),
        (
            Rejection::ModelNotAllowed,
            403,
            "model_not_allowed",
            "authorize",
            None,
        ),
        (
            Rejection::MaxTokensExceeded { cap: 4096 },
            400,
            "max_tokens_exceeded",
            "validate",
            None,
        ),
        (
            Rejection::TokenBudgetExceeded {
                tokens: 1000,
                per: crate::config::Period::Day,
                retry_after: 60,
            },
            429,
            "token_budget_exceeded",
            "limit",
            None,
        ),
        (
            Rejection::TooManyStreams { limit: 4 },
            429,
            "too_many_streams",
            "limit",
            None,
        ),
        (
            Rejection::InvalidLlmRequest("max_tokens"),
            400,
            "invalid_llm_request",
            "validate",
            None,
        ),
        (
            Rejection::InvalidParameters(vec![]),
            400,
            "invalid_parameters",
            "validate",
            None,
        ),
        (
            Rejection::UnsupportedMediaType {
                accepted: "application/json".into(),
            },
            415,
            "unsupported_media_type",
            "validate",
            None,
        ),
        (
            Rejection::BodyRequired,
            400,
            "body_required",
            "validate",
            None,
        ),
        (
            Rejection::UnexpectedBody,
            400,
            "unexpected_body",
            "validate",
            None,
        ),
        (
            Rejection::InvalidJson("x".into()),
            400,
            "invalid_json",
            "validate",
            None,
        ),
        (
            Rejection::BodySchema(vec![]),
            400,
            "body_schema",
            "validate",
            None,
        ),
        (
            Rejection::BodyTooLarge { limit: 8 },
            413,
            "body_too_large",
            "validate",
            None,
        ),
        (
            Rejection::BodyTimeout,
            408,
            "body_timeout",
            "validate",
            None,
        ),
        (
            Rejection::BodyUnreadable,
            400,
            "body_unreadable",
            "validate",
            None,
        ),
        (
            Rejection::InvalidGrpcMessage("a second message on a unary call"),
            400,
            "invalid_grpc_message",
            "validate",
            None,
        ),
        (
            Rejection::GrpcMessageSchema {
                message: 2,
                errors: vec![],
            },
            400,
            "grpc_message_schema",
            "validate",
            None,
        ),
        (
            Rejection::GrpcMessageTooLarge { limit: 8 },
            413,
            "grpc_message_too_large",
            "validate",
            None,
        ),
        (
            Rejection::UpstreamResponseInvalid("status 418 is not declared".into()),
            502,
            "upstream_response_invalid",
            "forward",
            None,
        ),
        (
            Rejection::UpstreamError {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
            },
            503,
            "upstream_error",
            "forward",
            None,
        ),
        (
            Rejection::GrpcEncodingUnsupported,
            501,
            "grpc_encoding_unsupported",
            "validate",
            None,
        ),
        (
            Rejection::UpstreamUnavailable,
            502,
            "upstream_unavailable",
            "forward",
            None,
        ),
        (
            Rejection::UpstreamTimeout,
            504,
            "upstream_timeout",
            "forward",
            None,
        ),
        (
            Rejection::InvalidHost(HostProblem::Twice),
            400,
            "invalid_host",
            "frame",
            None,
        ),
        (
            Rejection::UpstreamExceededMaxTokens { admitted: 16 },
            502,
            "upstream_exceeded_max_tokens",
            "forward",
            None,
        ),
        (
            Rejection::Internal(Stage::Forward),
            500,
            "internal_error",
            "forward",
            None,
        ),
    ];
    let mut covered = [false; VARIANTS];
    for (rejection, status, code, stage, challenge) in table {
        covered[ordinal(&rejection)] = true;
        assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
        assert_eq!(rejection.code(), code, "{rejection:?}");
        assert_eq!(rejection.stage().as_str(), stage, "{rejection:?}");
        let header = rejection.challenge();
        match challenge {
            Some(part) => assert!(
                header
                    .as_ref()
                    .is_some_and(|h| h.to_str().unwrap().contains(part)),
                "{rejection:?}: {header:?}"
            ),
            None => assert_eq!(header, None, "{rejection:?}"),
        }
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&n| !covered[n]).collect();
    assert!(missing.is_empty(), "variants without a row: {missing:?}");
    // The stage of an internal fault is where it happened.
    assert_eq!(
        Rejection::Internal(Stage::Authenticate).stage(),
        Stage::Authenticate
    );
    // An API key lacking a scope is no Bearer credential: no challenge.
    let key = Rejection::InsufficientScope {
        scope: scope(),
        bearer: false,
    };
    assert_eq!(key.challenge(), None);
}

#[test]
fn a_rejection_renders_as_problem_json_with_the_request_id() {
    let response =
        Rejection::BodyTooLarge { limit: 10 }.into_response("req-1", super::Audience::Any);
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let body = response.into_body();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
    assert_eq!(json["type"], "about:blank");
    assert_eq!(json["title"], "Payload Too Large");
    assert_eq!(json["status"], 413);
    assert_eq!(json["code"], "body_too_large");
    assert_eq!(json["request_id"], "req-1");
    assert_eq!(json["detail"], "the request body is larger than 10 bytes");
    assert_eq!(json["errors"], serde_json::json!([]));
}
