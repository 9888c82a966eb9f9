//! The SASL messages of a bearer-token login (pure): XOAUTH2 (Google's, also
//! Microsoft's) and OAUTHBEARER (RFC 7628), the same for IMAP and SMTP.
//!
//! On a refused token the server first sends a challenge (`+ <base64 JSON>`
//! in IMAP, `334 <base64 JSON>` in SMTP) and says NO/535 only once the
//! client answers it: [`Mechanism::abort`] is that answer. The token never
//! leaves this module except in the encoded response that goes to the socket.

use base64::Engine;

/// A bearer-token mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 7628, preferred when offered.
    OauthBearer,
    /// Google's and Microsoft's own.
    Xoauth2,
}

impl Mechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::OauthBearer => "OAUTHBEARER",
            Mechanism::Xoauth2 => "XOAUTH2",
        }
    }

    /// The one to use of those a server offers (OAUTHBEARER first, as
    /// SPEC §12 says); None when it offers neither.
    pub fn choose(offers: impl Fn(&str) -> bool) -> Option<Mechanism> {
        [Mechanism::OauthBearer, Mechanism::Xoauth2]
            .into_iter()
            .find(|m| offers(m.name()))
    }

    /// The client's response, base64: the user, the token, and for
    /// OAUTHBEARER the server's host and port.
    pub fn initial_response(self, user: &str, token: &str, host: &str, port: u16) -> String {
        let raw = match self {
            Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            Mechanism::OauthBearer => format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
                gs2_name(user)
            ),
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The answer to a refusal's challenge, after which the server says
    /// NO/535: an empty line for XOAUTH2, `AQ==` (a lone ^A) for OAUTHBEARER.
    pub fn abort(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "",
            Mechanism::OauthBearer => "AQ==",
        }
    }
}

/// A name in a GS2 header: `,` and `=` escaped (RFC 5801).
fn gs2_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// What a refusal's challenge says (its JSON decoded, for `last_error`),
/// or None when it is not base64 of printable text.
pub fn challenge_text(challenge: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(challenge.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    (!text.is_empty() && !text.chars().any(char::is_control))
        .then(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64");
        String::from_utf8(bytes).expect("utf8")
    }

    #[test]
    fn initial_responses() {
        assert_eq!(
            decode(&Mechanism::Xoauth2.initial_response("a@x", "T0K", "imap.x", 993)),
            "user=a@x\x01auth=Bearer T0K\x01\x01"
        );
        assert_eq!(
            decode(&Mechanism::OauthBearer.initial_response("a,b=c@x", "T0K", "imap.x", 993)),
            "n,a=a=2Cb=3Dc@x,\x01host=imap.x\x01port=993\x01auth=Bearer T0K\x01\x01"
        );
    }

    #[test]
    fn choice_and_aborts() {
        assert_eq!(
            Mechanism::choose(|m| m == "XOAUTH2" || m == "OAUTHBEARER"),
            Some(Mechanism::OauthBearer)
        );
        assert_eq!(
            Mechanism::choose(|m| m == "XOAUTH2"),
            Some(Mechanism::Xoauth2)
        );
        assert_eq!(Mechanism::choose(|m| m == "PLAIN"), None);
        assert_eq!(decode(Mechanism::OauthBearer.abort()), "\x01");
        assert_eq!(Mechanism::Xoauth2.abort(), "");
    }

    #[test]
    fn challenges() {
        let json = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(challenge_text(&b64).as_deref(), Some(json));
        assert_eq!(challenge_text("not base64!"), None);
        let control = base64::engine::general_purpose::STANDARD.encode("\x01");
        assert_eq!(challenge_text(&control), None);
    }
}
