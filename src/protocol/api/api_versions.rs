//! ApiVersions: the version table clients negotiate with. A request for a version newer than
//! ours gets UNSUPPORTED_VERSION with the table in a v0 body and a v0 response header
//! (KIP-511), so the client can retry with a version we speak.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::Encodable;

use super::{finish_frame, supported_apis, ApiContext, KafkaApi, Outcome, PendingResponse, Reply};

pub struct ApiVersions;

fn table() -> Vec<ApiVersion> {
    supported_apis()
        .into_iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

impl KafkaApi for ApiVersions {
    const KEY: ApiKey = ApiKey::ApiVersions;
    const MAX_VERSION: i16 = 3;
    type Request = ApiVersionsRequest;
    type Response = ApiVersionsResponse;

    fn handle(
        _ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        _request: ApiVersionsRequest,
    ) -> BoxFuture<'static, Reply<ApiVersionsResponse>> {
        futures::future::ready(Reply::Respond(
            ApiVersionsResponse::default().with_api_keys(table()),
        ))
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(code)
            .with_api_keys(table())
    }
}

/// UNSUPPORTED_VERSION with the supported table, v0 header and v0 body.
pub fn unsupported_version_fallback(correlation_id: i32) -> PendingResponse {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(table());
    let mut out = BytesMut::with_capacity(512);
    out.put_i32(0);
    let encoded = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, 0)
        .and_then(|()| response.encode(&mut out, 0));
    let outcome = match encoded {
        Ok(()) => Outcome::Respond(finish_frame(out, Vec::new())),
        Err(e) => Outcome::Close(format!("cannot encode the ApiVersions fallback: {e}")),
    };
    futures::future::ready(outcome).boxed()
}
