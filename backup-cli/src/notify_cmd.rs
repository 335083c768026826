//! `notify test`: check the notification settings by sending for real.

use std::process::ExitCode;

use backup_core::{
    config::Settings,
    notify::{Notifier, Sender},
};

use crate::output::outln;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send a test mail to the recipients and a test notice to every
    /// webhook, and report what each server answered.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Only the mail.
    #[arg(long, conflicts_with = "webhooks")]
    email: bool,
    /// Only the webhooks.
    #[arg(long)]
    webhooks: bool,
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let Command::Test(args) = cmd;
    let (email, webhooks) = match (args.email, args.webhooks) {
        (false, false) => (true, true),
        chosen => chosen,
    };
    if args.email && settings.smtp.is_none() {
        anyhow::bail!(
            "no [smtp] section is configured; add url and from (see `backup-cli config example`)"
        );
    }
    if args.webhooks && settings.webhooks.is_empty() {
        anyhow::bail!("no [[webhooks]] are configured");
    }
    if settings.smtp.is_none() && settings.webhooks.is_empty() {
        anyhow::bail!(
            "nothing to test: configure [smtp] (with notification_emails or admins) or [[webhooks]]"
        );
    }
    let notifier = Notifier::new(&settings).single_try().sent_by(Sender::Cli);
    let mut failed = false;
    if email && settings.smtp.is_some() {
        match notifier.test_mail().await {
            Ok(test) => {
                outln!(
                    "email: sent to {} through {}",
                    test.recipients.join(", "),
                    test.server
                );
                outln!("  server replied: {}", test.reply);
            }
            Err(reason) => {
                failed = true;
                outln!("email: FAILED: {reason}");
            }
        }
    }
    if webhooks {
        for (url, result) in notifier.test_webhooks().await {
            match result {
                Ok(status) => outln!("webhook {url}: {status}"),
                Err(reason) => {
                    failed = true;
                    outln!("webhook {url}: FAILED: {reason}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
