//! The command line: parse, resolve settings, dispatch to one command module.

pub mod ca_commands;
pub mod run;
pub mod serve;
pub mod settings;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use settings::{LogFormat, RawSettings, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "certdock",
    version,
    about = "An internal CA and Docker-label-driven mTLS controller for Traefik"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: RawSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The default: CA + Docker controller + HTTPS API on --listen, in one process.
    Run,
    /// Docker controller only, with certificates from a remote certdock CA.
    Agent {
        /// The CA's HTTPS URL, e.g. https://ca.example.net.
        #[arg(long, env = "CERTDOCK_CA_URL")]
        ca_url: String,
        /// File holding a single-use `agent` token (used once, at enrolment).
        #[arg(long, env = "CERTDOCK_TOKEN_FILE")]
        token_file: PathBuf,
        /// SHA-256 of the CA root certificate's DER (hex, colons allowed): pinned on first contact.
        #[arg(long, env = "CERTDOCK_CA_FINGERPRINT")]
        ca_fingerprint: String,
    },
    /// Create the CA (root + intermediate) in the state directory; refuses to overwrite.
    Init {
        /// Bring an existing root certificate (PEM) instead of making one.
        #[arg(long, requires = "import_key")]
        import_root: Option<PathBuf>,
        /// The private key (PEM) of --import-root.
        #[arg(long, requires = "import_root")]
        import_key: Option<PathBuf>,
    },
    /// Issue one certificate on demand.
    Issue(ca_commands::IssueArgs),
    /// The CA's own certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Every managed certificate: name, container, SANs, usage, not-after, next renewal, last error.
    Status {
        /// Print a JSON array (one object per certificate) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bootstrap tokens for agents and `POST /v1/sign`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Revoke a certificate by serial (hex), with every certificate renewed from it, or every
    /// live certificate of an identity (`--name`); the CRL, forward-auth and renewal refuse
    /// them from then on.
    Revoke {
        /// The certificate's serial in hex (any case, colons allowed), as `certdock status` shows it.
        #[arg(required_unless_present = "name")]
        serial: Option<String>,
        /// Revoke every unrevoked, unexpired certificate of this identity (its `certdock.name`).
        #[arg(long, value_name = "NAME", conflicts_with = "serial")]
        name: Option<String>,
    },
    /// The CA and its HTTPS API only (a central CA for agents); creates the CA if none exists.
    Serve,
    /// Print the effective settings (after flags, environment, file and defaults) as JSON.
    Settings,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// A new intermediate now (the old one stays trusted while it is valid); with --root, a
    /// new root cross-signed by the current one. Safe while `run` or `serve` runs: they pick
    /// it up within seconds. See README, "Replacing the root".
    Rotate {
        /// Replace the root, not only the intermediate.
        #[arg(long)]
        root: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a short-lived, single-use token; prints it once on stdout.
    Create {
        /// A label for the token (who it is for).
        #[arg(long)]
        name: String,
        /// How long the token stays valid. The global `--allow-domain` scopes the token's names.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// `sign` (one CSR), `agent` (enrol an agent), `admin` (one revocation) or `acme` (one
        /// ACME External Account Binding: prints `kid=` and `hmac=`).
        #[arg(long, default_value = "sign")]
        kind: String,
    },
}

/// Sets up logging on stderr: text by default, one JSON object per line with `--log-format json`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CERTDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the command line; the one-line reason of a failure goes to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let raw = cli.settings.clone();
    let settings = match Settings::resolve(cli.settings) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    init_logging(settings.log_format);
    let result = match cli.command {
        Command::Init {
            import_root,
            import_key,
        } => ca_commands::init(&settings, import_root, import_key),
        Command::Issue(args) => ca_commands::issue(&settings, args),
        Command::Ca {
            command: CaCommand::Rotate { root },
        } => ca_commands::rotate(&settings, root),
        Command::Run => run::run(&settings, raw),
        Command::Agent {
            ca_url,
            token_file,
            ca_fingerprint,
        } => run::agent(
            &settings,
            raw,
            run::AgentArgs {
                ca_url,
                token_file,
                ca_fingerprint,
            },
        ),
        Command::Status { json } => status::run(&settings, json),
        Command::Token {
            command: TokenCommand::Create { name, ttl, kind },
        } => ca_commands::token_create(&settings, &name, &ttl, &kind),
        Command::Revoke { serial, name } => ca_commands::revoke(&settings, serial, name),
        Command::Settings => ca_commands::print_settings(&settings),
        Command::Serve => serve::command(&settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    let line = e.to_string().replace('\n', " ");
    eprintln!("certdock: {line}");
    ExitCode::FAILURE
}

/// What commands return: any error, shown as one line.
pub type CmdResult = Result<(), Box<dyn std::error::Error>>;
