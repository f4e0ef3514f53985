//! The guide `moat demo` prints: the session's addresses and credentials, then each
//! example as a `# expect NNN: what` line and one command (the end-to-end test runs them
//! and checks the status).

use std::net::SocketAddr;

use super::Credentials;

/// Everything the demo printed banner needs, known once the listeners are bound.
pub(super) struct Session {
    pub(super) public: SocketAddr,
    pub(super) admin: SocketAddr,
    pub(super) credentials: Credentials,
}

/// The guide, with `{moat}` and `{admin}` for the listeners' URLs and the session's
/// credentials by name; every other brace is printed as it stands.
const GUIDE: &str = r#"
moat demo: a sample iris model behind moat, on the shipped config/
  moat:    {moat}   (admin: {admin})
  API key: {key}   (scopes predict generate; shown once)
  JWT:     {token}
  (session credentials: they stop working when the demo stops)

# expect 200: predict with the API key
curl -s {moat}/v1/models/iris:predict -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 200: predict with the JWT
curl -s {moat}/v1/models/iris:predict -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 200: a server-sent event stream, relayed as it is produced
curl -sN {moat}/v1/generate/stream -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{"prompt": "iris", "max_tokens": 5}'

# expect 200: public: the spec's health check
curl -s {moat}/health

# expect 401: no credentials
curl -s {moat}/v1/models/iris:predict -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 401: a wrong key (same id, wrong secret)
curl -s {moat}/v1/models/iris:predict -H 'X-API-Key: moat_demo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 401: a tampered token
curl -s {moat}/v1/models/iris:predict -H 'Authorization: Bearer {token}x' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 403: a token without the `predict` scope
curl -s {moat}/v1/models/iris:predict -H 'Authorization: Bearer {read_only_token}' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

# expect 400: a row with three features instead of four (never reaches the model)
curl -s {moat}/v1/models/iris:predict -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4]]}'

# expect 400: strict JSON: a duplicate key
curl -s {moat}/v1/models/iris:predict -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{"instances": [[1,2,3,4]], "instances": [[0,0,0,0]]}'

# expect 415: a body that is not JSON
curl -s {moat}/v1/models/iris:predict -H 'X-API-Key: {key}' -H 'Content-Type: text/plain' -d hello

# expect 400: a path with `..` (no normalising guesswork)
curl -s --path-as-is {moat}/v1/models/../models -H 'X-API-Key: {key}'

# expect 404: a path the spec does not declare
curl -s {moat}/docs -H 'X-API-Key: {key}'

# expect 405: a method the path does not declare
curl -s -X DELETE {moat}/v1/models -H 'X-API-Key: {key}'

# expect 429: a key limited to 1/s with a burst of 2, called six times in a row
for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' {moat}/v1/models -H 'X-API-Key: {limited_key}'; done; echo

# expect 200: the metrics, counted per operation, status and refusal
curl -s {admin}/metrics

# expect 200: the status page's data; open {admin}/ in a browser for the page itself
curl -s {admin}/status.json

Access log lines follow below. Ctrl-C stops the demo.

"#;

/// The printed guide for this session.
pub(super) fn banner(s: &Session) -> String {
    let credentials = &s.credentials;
    // No value holds a brace, so no replacement can make another placeholder.
    GUIDE
        .replace("{moat}", &format!("http://{}", s.public))
        .replace("{admin}", &format!("http://{}", s.admin))
        .replace("{key}", &credentials.key)
        .replace("{limited_key}", &credentials.limited_key)
        .replace("{token}", &credentials.token)
        .replace("{read_only_token}", &credentials.read_only_token)
}
