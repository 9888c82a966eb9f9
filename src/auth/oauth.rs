//! OAuth 2.0 with a provider (SPEC §12): the presets of Microsoft and
//! Google, the refresh of an access token, the device authorization of RFC
//! 8628, and how an endpoint's answer is judged (pure, tested as a table).

use super::http::{self, Url};
use crate::net::Tls;
use serde_json::Value;
use std::time::Duration;

/// What a provider preset fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub token_url: String,
    pub device_url: Option<String>,
    pub scope: &'static str,
    /// IMAP host, port, security.
    pub imap: (&'static str, u16, &'static str),
    /// SMTP host, port, security.
    pub smtp: (&'static str, u16, &'static str),
}

/// The preset of `provider` (`microsoft`, with its `tenant`, or `google`).
pub fn preset(provider: &str, tenant: &str) -> Option<Preset> {
    match provider {
        "microsoft" => {
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            Some(Preset {
                token_url: format!("{base}/token"),
                device_url: Some(format!("{base}/devicecode")),
                scope: "https://outlook.office.com/IMAP.AccessAsUser.All \
                        https://outlook.office.com/SMTP.Send offline_access",
                imap: ("outlook.office365.com", 993, "tls"),
                smtp: ("smtp.office365.com", 587, "starttls"),
            })
        }
        "google" => Some(Preset {
            token_url: "https://oauth2.googleapis.com/token".into(),
            // Google's device flow does not grant the mail scope.
            device_url: None,
            scope: "https://mail.google.com/",
            imap: ("imap.gmail.com", 993, "tls"),
            smtp: ("smtp.gmail.com", 465, "tls"),
        }),
        _ => None,
    }
}

/// The provider's name for people: `Microsoft`, `Google`, else the token
/// endpoint's host.
pub fn provider_name(provider: Option<&str>, token_url: &str) -> String {
    match provider {
        Some("microsoft") => "Microsoft".into(),
        Some("google") => "Google".into(),
        _ => Url::parse(token_url)
            .map(|u| u.host)
            .unwrap_or_else(|_| "the token endpoint".into()),
    }
}

/// An account's OAuth 2.0 registration, as its row holds it.
#[derive(Clone)]
pub struct Client {
    pub provider: Option<String>,
    pub token_url: String,
    pub device_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// Tokens a grant gave.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// A new refresh token, when the provider rotates it (Microsoft does).
    pub refresh_token: Option<String>,
}

// Tokens must never reach a log line through `{:?}`.
impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("expires_in", &self.expires_in)
            .field("rotated", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// An endpoint's answer, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Granted(Grant),
    /// `invalid_grant`, `invalid_client`, `unauthorized_client`: the
    /// grant or the registration is refused for good; a person must act.
    Refused {
        code: String,
        why: Option<String>,
    },
    /// Device flow: the user has not finished yet.
    Pending,
    /// Device flow: poll more slowly.
    SlowDown,
    /// Any other error, a bad body, a server error: for this time only.
    Failed(String),
    /// An answer with no usable access token that still holds a new
    /// refresh token: that one must be kept (the old one may be dead).
    Rotated {
        why: String,
        refresh_token: String,
    },
}

/// Longest access-token life believed (a year): more is nonsense.
const MAX_EXPIRES_IN: i64 = 366 * 86400;

/// Judges a token endpoint's answer (status and body).
pub fn judge(status: u16, body: &[u8]) -> Answer {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let Some(Value::Object(obj)) = json else {
        let kind = if body.trim_ascii_start().starts_with(b"<") {
            "an HTML page"
        } else if body.is_empty() {
            "an empty body"
        } else {
            "a body that is not JSON"
        };
        return Answer::Failed(format!(
            "the token endpoint answered HTTP {status} with {kind}"
        ));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(code) = text("error") {
        let why = text("error_description").map(|d| d.lines().next().unwrap_or("").to_string());
        return match code.as_str() {
            "invalid_grant" | "invalid_client" | "unauthorized_client" => {
                Answer::Refused { code, why }
            }
            "authorization_pending" => Answer::Pending,
            "slow_down" => Answer::SlowDown,
            // access_denied, expired_token and the rest: said as they are.
            _ => Answer::Failed(match why {
                Some(why) => format!("the token endpoint said {code}: {why}"),
                None => format!("the token endpoint said {code}"),
            }),
        };
    }
    if !(200..300).contains(&status) {
        return Answer::Failed(format!("the token endpoint answered HTTP {status}"));
    }
    let refresh_token = text("refresh_token").filter(|t| !t.is_empty());
    let unusable = |why: String| match &refresh_token {
        Some(rt) => Answer::Rotated {
            why,
            refresh_token: rt.clone(),
        },
        None => Answer::Failed(why),
    };
    let Some(access_token) = text("access_token").filter(|t| !t.is_empty()) else {
        return unusable("the token endpoint's answer has no access_token".into());
    };
    let expires_in = match obj.get("expires_in") {
        None => Some(3600),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    let Some(expires_in) = expires_in.filter(|e| (1..=MAX_EXPIRES_IN).contains(e)) else {
        return unusable(format!(
            "the token endpoint's answer has a nonsense expires_in ({})",
            obj.get("expires_in")
                .map(Value::to_string)
                .unwrap_or_default()
        ));
    };
    Answer::Granted(Grant {
        access_token,
        expires_in,
        refresh_token,
    })
}

/// Why a token request gave no token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL cannot be used, or nothing usable came back.
    #[error(transparent)]
    Http(#[from] http::Error),
    /// The endpoint answered, but not with a token.
    #[error("{0}")]
    Answer(String),
}

/// POSTs `fields` to `url` and judges the answer.
pub fn request(
    url: &str,
    fields: &[(&str, &str)],
    tls: &Tls,
    timeout: Duration,
) -> Result<Answer, Error> {
    let url = Url::parse(url)?;
    let answer = http::post_form(&url, &http::form(fields), tls, timeout)?;
    Ok(judge(answer.status, &answer.body))
}

/// The `refresh_token` grant: a new access token (and maybe a new refresh
/// token).
pub fn refresh(
    client: &Client,
    refresh_token: &str,
    tls: &Tls,
    timeout: Duration,
) -> Result<Answer, Error> {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client.client_id.as_str()),
    ];
    if let Some(secret) = client.client_secret.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("client_secret", secret));
    }
    if let Some(scope) = client.scope.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("scope", scope));
    }
    request(&client.token_url, &fields, tls, timeout)
}

/// What the device endpoint said to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// Seconds between polls.
    pub interval: u64,
    /// Seconds the code lives.
    pub expires_in: u64,
}

/// Judges the device endpoint's answer.
pub fn device_code(status: u16, body: &[u8]) -> Result<DeviceCode, Error> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(Error::Answer(format!(
            "the device endpoint answered HTTP {status} without JSON"
        )));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let number = |k: &str| {
        obj.get(k).and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    };
    if let Some(code) = text("error") {
        return Err(Error::Answer(format!(
            "the device endpoint said {code}{}",
            text("error_description")
                .map(|d| format!(": {}", d.lines().next().unwrap_or("")))
                .unwrap_or_default()
        )));
    }
    let (Some(device_code), Some(user_code)) = (text("device_code"), text("user_code")) else {
        return Err(Error::Answer(
            "the device endpoint's answer has no device_code or user_code".into(),
        ));
    };
    // Microsoft says verification_uri, some older endpoints verification_url.
    let Some(verification_uri) = text("verification_uri").or(text("verification_url")) else {
        return Err(Error::Answer(
            "the device endpoint's answer has no verification_uri".into(),
        ));
    };
    Ok(DeviceCode {
        device_code,
        user_code,
        verification_uri,
        verification_uri_complete: text("verification_uri_complete"),
        interval: number("interval").unwrap_or(5).clamp(1, 60),
        expires_in: number("expires_in").unwrap_or(900).min(86400),
    })
}

/// Starts a device authorization: asks the device endpoint for codes.
pub fn start_device(client: &Client, tls: &Tls, timeout: Duration) -> Result<DeviceCode, Error> {
    let url = client.device_url.as_deref().unwrap_or("");
    let mut fields = vec![("client_id", client.client_id.as_str())];
    if let Some(scope) = client.scope.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("scope", scope));
    }
    let url = Url::parse(url)?;
    let answer = http::post_form(&url, &http::form(&fields), tls, timeout)?;
    device_code(answer.status, &answer.body)
}

/// One poll of the token endpoint for a device code.
pub fn poll_device(
    client: &Client,
    device_code: &str,
    tls: &Tls,
    timeout: Duration,
) -> Result<Answer, Error> {
    let mut fields = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", client.client_id.as_str()),
    ];
    if let Some(secret) = client.client_secret.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("client_secret", secret));
    }
    request(&client.token_url, &fields, tls, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(access: &str, expires_in: i64, refresh: Option<&str>) -> Answer {
        Answer::Granted(Grant {
            access_token: access.into(),
            expires_in,
            refresh_token: refresh.map(str::to_string),
        })
    }

    #[test]
    fn token_answers_table() {
        let failed = |s: &str| Answer::Failed(s.into());
        let cases: Vec<(&str, u16, &str, Answer)> = vec![
            (
                "microsoft_rotates",
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"A","refresh_token":"R2"}"#,
                granted("A", 3599, Some("R2")),
            ),
            (
                "google_keeps",
                200,
                r#"{"access_token":"A","expires_in":3599}"#,
                granted("A", 3599, None),
            ),
            (
                "expires_in_as_text",
                200,
                r#"{"access_token":"A","expires_in":"60"}"#,
                granted("A", 60, None),
            ),
            (
                "no_expires_in_means_an_hour",
                200,
                r#"{"access_token":"A"}"#,
                granted("A", 3600, None),
            ),
            (
                "invalid_grant_needs_consent",
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS70000: expired\r\nTrace ID: x"}"#,
                Answer::Refused {
                    code: "invalid_grant".into(),
                    why: Some("AADSTS70000: expired".into()),
                },
            ),
            (
                "invalid_client_needs_consent",
                401,
                r#"{"error":"invalid_client"}"#,
                Answer::Refused {
                    code: "invalid_client".into(),
                    why: None,
                },
            ),
            (
                "unauthorized_client_needs_consent",
                400,
                r#"{"error":"unauthorized_client"}"#,
                Answer::Refused {
                    code: "unauthorized_client".into(),
                    why: None,
                },
            ),
            (
                "pending",
                400,
                r#"{"error":"authorization_pending"}"#,
                Answer::Pending,
            ),
            (
                "slow_down",
                400,
                r#"{"error":"slow_down"}"#,
                Answer::SlowDown,
            ),
            (
                "access_denied_is_said",
                400,
                r#"{"error":"access_denied","error_description":"the user said no"}"#,
                failed("the token endpoint said access_denied: the user said no"),
            ),
            (
                "server_error",
                503,
                r#"{"error":"temporarily_unavailable"}"#,
                failed("the token endpoint said temporarily_unavailable"),
            ),
            (
                "html",
                200,
                "<html><body>Sign in</body></html>",
                failed("the token endpoint answered HTTP 200 with an HTML page"),
            ),
            (
                "empty",
                502,
                "",
                failed("the token endpoint answered HTTP 502 with an empty body"),
            ),
            (
                "json_array",
                200,
                "[1]",
                failed("the token endpoint answered HTTP 200 with a body that is not JSON"),
            ),
            (
                "no_access_token",
                200,
                r#"{"token_type":"Bearer"}"#,
                failed("the token endpoint's answer has no access_token"),
            ),
            (
                "empty_access_token",
                200,
                r#"{"access_token":""}"#,
                failed("the token endpoint's answer has no access_token"),
            ),
            (
                "negative_expires_in",
                200,
                r#"{"access_token":"A","expires_in":-5}"#,
                failed("the token endpoint's answer has a nonsense expires_in (-5)"),
            ),
            (
                "absurd_expires_in",
                200,
                r#"{"access_token":"A","expires_in":99999999999}"#,
                failed("the token endpoint's answer has a nonsense expires_in (99999999999)"),
            ),
            (
                "word_expires_in",
                200,
                r#"{"access_token":"A","expires_in":"soon"}"#,
                failed("the token endpoint's answer has a nonsense expires_in (\"soon\")"),
            ),
            (
                "error_status_without_error",
                500,
                r#"{"x":1}"#,
                failed("the token endpoint answered HTTP 500"),
            ),
            (
                "nonsense_but_rotated_keeps_the_new_refresh_token",
                200,
                r#"{"access_token":"A","expires_in":"soon","refresh_token":"R2"}"#,
                Answer::Rotated {
                    why: "the token endpoint's answer has a nonsense expires_in (\"soon\")".into(),
                    refresh_token: "R2".into(),
                },
            ),
        ];
        for (name, status, body, want) in cases {
            assert_eq!(judge(status, body.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn device_answers() {
        let ok = device_code(
            200,
            br#"{"device_code":"D","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5}"#,
        )
        .expect("codes");
        assert_eq!(ok.user_code, "ABCD-EFGH");
        assert_eq!((ok.interval, ok.expires_in), (5, 900));
        assert!(device_code(400, br#"{"error":"invalid_client"}"#)
            .expect_err("refused")
            .to_string()
            .contains("invalid_client"));
        assert!(device_code(200, br#"{"device_code":"D"}"#).is_err());
        assert!(device_code(200, b"<html>").is_err());
    }

    #[test]
    fn presets() {
        let m = preset("microsoft", "contoso.onmicrosoft.com").expect("microsoft");
        assert_eq!(
            m.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(m.device_url.is_some_and(|d| d.ends_with("/devicecode")));
        assert_eq!(m.smtp, ("smtp.office365.com", 587, "starttls"));
        let g = preset("google", "common").expect("google");
        assert_eq!(g.device_url, None);
        assert_eq!(g.scope, "https://mail.google.com/");
        assert!(preset("yahoo", "common").is_none());
        assert_eq!(provider_name(Some("microsoft"), ""), "Microsoft");
        assert_eq!(
            provider_name(None, "https://sso.example.com/t"),
            "sso.example.com"
        );
    }
}
