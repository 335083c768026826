//! Mail over SMTP (lettre): STARTTLS or implicit TLS, a private CA,
//! credentials masked in every error, one send bounded in time.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::header::{ContentType, Header, HeaderName, HeaderValue},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        extension::ClientId,
    },
};
use secrecy::ExposeSecret;

use super::{
    message::Email,
    send::{SendError, full_chain},
};
use crate::{
    config::{EmailAddress, SmtpEndpoint, SmtpSecurity, SmtpSettings},
    redact,
};

/// Sends `email` to `recipients` once; returns the server's reply.
pub(crate) async fn send(
    smtp: &SmtpSettings,
    recipients: &[EmailAddress],
    email: &Email,
) -> Result<String, SendError> {
    let permanent = |reason: String| SendError {
        reason,
        retry: false,
    };
    let endpoint = smtp.endpoint().map_err(|e| permanent(e.to_string()))?;
    let message = message(smtp, recipients, email)
        .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
    let transport = transport(smtp, &endpoint).map_err(permanent)?;
    let secret = endpoint
        .credentials
        .as_ref()
        .map(|(_, p)| p.expose_secret().to_string())
        .unwrap_or_default();
    // lettre's own timeout covers connecting only; bound the dialogue.
    let limit = Duration::from_secs(smtp.timeout_seconds);
    let Ok(sent) = tokio::time::timeout(limit, transport.send(message)).await else {
        return Err(SendError {
            reason: format!(
                "{}: timed out after {} s (smtp.timeout_seconds)",
                endpoint_label(&endpoint),
                smtp.timeout_seconds
            ),
            retry: true,
        });
    };
    match sent {
        Ok(response) => Ok(format!(
            "{} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        )),
        Err(e) => Err(SendError {
            // 5xx replies (auth refused, recipient rejected) stay so.
            retry: !e.is_permanent(),
            reason: redact::text(
                &format!("{}: {}", endpoint_label(&endpoint), full_chain(&e)),
                &[&secret],
            ),
        }),
    }
}

fn message(
    smtp: &SmtpSettings,
    recipients: &[EmailAddress],
    email: &Email,
) -> Result<Message, String> {
    let domain = smtp.from.domain();
    let mut builder = Message::builder()
        .from(smtp.from.mailbox())
        .subject(email.subject.clone())
        .date_now()
        .message_id(Some(format!(
            "<{}@{domain}>",
            uuid::Uuid::new_v4().simple()
        )))
        .header(AutoSubmitted)
        .header(ContentType::TEXT_PLAIN);
    for to in recipients {
        builder = builder.to(to.mailbox());
    }
    builder.body(email.body.clone()).map_err(|e| e.to_string())
}

fn endpoint_label(endpoint: &SmtpEndpoint) -> String {
    format!("{}:{}", endpoint.host, endpoint.port)
}

/// The lettre transport for `[smtp]`, TLS as configured.
fn transport(
    smtp: &SmtpSettings,
    endpoint: &SmtpEndpoint,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(endpoint.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| format!("TLS set-up: {e}"))
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
        .port(endpoint.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_seconds)))
        .hello_name(hello_name())
        .tls(match endpoint.security {
            SmtpSecurity::Implicit => Tls::Wrapper(tls()?),
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls()?),
            SmtpSecurity::Plain => Tls::None,
        });
    if let Some((user, password)) = &endpoint.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_string(),
        ));
    }
    Ok(builder.build())
}

/// This host's name for EHLO, when it is a usable domain name.
fn hello_name() -> ClientId {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let usable = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    ClientId::Domain(if usable { host } else { "localhost".into() })
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells mail servers and
/// vacation responders that a program sent this.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}
