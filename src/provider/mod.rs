//! Provider mode: reading steps 1 to 4 from the CDN's own API (issue "provider mode"). So far
//! Akamai's signed client (EdgeGrid), Edgecast's OAuth2 token cache, and the HTTPS client
//! every provider call goes through; the API shapes are in `docs/design/provider-apis.md`.

pub mod account;
pub mod akamai;
pub mod akamai_read;
pub mod edgecast_auth;
pub mod edgegrid;
pub mod http;
pub mod view;
