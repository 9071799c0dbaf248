//! `gatemeter token create --id NAME --role ROLE [--team T]…`: makes an API
//! token, prints it once, and prints the `[[auth.tokens]]` entry (hashes
//! only) to add to the config file.

use clap::{Args, Subcommand};
use gatemeter_query::access::{token_sha256, Role};

use crate::error::CliError;

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is shown once and stored nowhere.
    Create(CreateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// A name for the token: the PostgreSQL user name and what logs show.
    #[arg(long)]
    pub id: String,
    /// viewer (KPIs, dashboards), finance (also SQL and named queries) or
    /// admin (everything).
    #[arg(long)]
    pub role: String,
    /// Only these teams' rows (repeatable); none: every team.
    #[arg(long = "team")]
    pub teams: Vec<String>,
}

pub fn run(args: &TokenArgs) -> Result<(), CliError> {
    let TokenCommand::Create(create) = &args.command;
    let role = Role::parse(&create.role).ok_or_else(|| {
        CliError::Usage(format!(
            "--role `{}`: expected one of {}",
            create.role,
            Role::ALLOWED
        ))
    })?;
    if create.id.trim().is_empty() || create.id.contains(['"', '\\']) {
        return Err(CliError::Usage(
            "--id: a non-empty name without quotes or backslashes".into(),
        ));
    }
    let token = format!("gmt_{}", crate::random::random_hex(32)?);
    let salt = crate::random::random_bytes(16)?;
    let salted = gatemeter_pg::login::salted_password(&token, &salt);
    let teams = if create.teams.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = create
            .teams
            .iter()
            .map(|team| serde_json::Value::String(team.clone()).to_string())
            .collect();
        format!("teams = [{}]\n", quoted.join(", "))
    };
    eprintln!("token (shown once; store it in a secret manager): ");
    println!("{token}");
    eprintln!("add to the config file:\n");
    eprintln!(
        "[[auth.tokens]]\nid = \"{id}\"\nrole = \"{role}\"\n{teams}sha256 = \"{sha256}\"\nscram = \"{salt}:{salted}\"",
        id = create.id,
        role = role.as_str(),
        sha256 = hex::encode(token_sha256(&token)),
        salt = hex::encode(&salt),
        salted = hex::encode(salted),
    );
    Ok(())
}
