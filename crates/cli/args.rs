//! Command-line arguments. Keep `--help` true to the code: every flag here is used.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "backstop",
    version,
    about = "Backups you have proven you can restore"
)]
pub struct Cli {
    /// Configuration file [default: backstop.toml; the embedded default when it does not exist]
    #[arg(long, global = true, env = "BACKSTOP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable output (JSON on stdout)
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr: text, or json (one object per line, for log collectors)
    #[arg(long, global = true, env = "BACKSTOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate policies
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run the scheduler: each policy's backups, drills, prunes and checks on their cron
    /// schedules, until SIGTERM or SIGINT (SIGHUP reloads the policies when all are valid)
    Daemon,
    /// Per policy: the last backup and its outcome, the next run, the RPO exposure now
    /// against the objective, the last drill and the drills awaiting sign-off
    Status,
    /// Per policy, each of its `[requirements]` (frequency, retention, offsite, drill_every,
    /// copies) against what was achieved over a period: met or not met, with the evidence.
    /// Exits 1 when one is not met
    Compliance {
        /// Start of the period: a date (2026-11-01, midnight UTC) or a UTC timestamp
        /// [default: 30 days before --to]
        #[arg(long)]
        from: Option<String>,
        /// End of the period: a date (the whole day is included) or a UTC timestamp
        /// [default: now]
        #[arg(long)]
        to: Option<String>,
        /// Only these policies (repeatable) [default: every policy that declares requirements]
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
    },
    /// The catalog of runs and snapshots
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Restore-test a policy now: restore a snapshot into a scratch target, run the checks,
    /// measure RTO and RPO, record the drill, clean up (`drill show ID` prints a recorded one)
    Drill(DrillArgs),
    /// List recorded drills, newest first
    Drills {
        /// Only this policy's drills
        policy: Option<String>,
        /// How many to list
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Sign a passed drill off as the policy's recovery owner (the principal is `principal`
    /// in backstop.toml or BACKSTOP_PRINCIPAL)
    Signoff {
        /// Drill id (or a unique prefix)
        drill: String,
        /// What was reviewed
        #[arg(long)]
        comment: String,
    },
    /// API tokens (made on the daemon's host; each shown once)
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Restore requests, through the daemon's API (BACKSTOP_API_URL, BACKSTOP_TOKEN)
    Request(RequestArgs),
    /// Signed evidence packs for auditors
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// The audit log: every state change, hash-chained
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Back up a policy's source now, then copy the snapshot to the policy's `copies`
    Backup {
        /// Policy name
        policy: String,
    },
    /// Disaster recovery from nothing but the configuration, the policies and the
    /// repositories' keys: rebuild the catalog, restore each policy's newest snapshot into
    /// its scratch target and run its drill checks, export and verify a signed evidence
    /// pack, and report the RTO per asset and for the estate, and the RPO each achieved
    Dr {
        /// Where the evidence pack goes (a new or empty directory)
        #[arg(long)]
        out: PathBuf,
        /// Only these policies (repeatable) [default: all]
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        /// Recover POLICY into a target of yours, kept afterwards, instead of its scratch
        /// target: a directory (files, config, SQLite), or env:VAR with VAR holding a database
        /// server's URL (PostgreSQL, MariaDB). Repeatable
        #[arg(long = "target", value_name = "POLICY=DIR|env:VAR")]
        targets: Vec<String>,
    },
    /// Copy one snapshot to another configured repository: only what it lacks is written,
    /// every object is read back to confirm it, and the snapshot is committed last
    Copy {
        /// Snapshot id (or a unique prefix), in any configured repository
        snapshot: String,
        /// The configured repository to copy to
        #[arg(long, value_name = "REPO")]
        to: String,
        /// The configured repository to copy from (default: whichever holds the snapshot)
        #[arg(long, value_name = "REPO")]
        from: Option<String>,
    },
    /// List snapshots
    Snapshots {
        /// Only this policy's snapshots
        policy: Option<String>,
        /// Only this configured repository
        #[arg(long)]
        repository: Option<String>,
    },
    /// Restore a snapshot straight from the repository (no catalog, no daemon needed)
    Restore(RestoreArgs),
    /// Check repository integrity
    Check {
        /// Read and verify every pack
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read and verify a share of the packs, e.g. 5%: those never read first, then the
        /// longest unread (the catalog records each pack read clean), so that checks of 5%
        /// read every pack within 20 checks
        #[arg(long, value_name = "N%")]
        read_data_subset: Option<String>,
        /// With --read-data-subset: read at most this many bytes, e.g. 2GiB (the rest is left
        /// for the next check)
        #[arg(long, value_name = "SIZE", requires = "read_data_subset")]
        egress_budget: Option<String>,
        /// Only this configured repository
        #[arg(long)]
        repository: Option<String>,
    },
    /// Apply retention and remove unreferenced data
    Prune {
        /// Show what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Only this configured repository
        #[arg(long)]
        repository: Option<String>,
    },
    /// Repair a repository from what it holds itself
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Show what changed between two snapshots
    Diff {
        /// The older snapshot: its id or a unique prefix (at least 4 hex digits)
        #[arg(value_name = "OLDER")]
        snapshot_a: String,
        /// The newer snapshot: its id or a unique prefix (at least 4 hex digits)
        #[arg(value_name = "NEWER")]
        snapshot_b: String,
        /// Only this configured repository (its name in backstop.toml)
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `backstop man > backstop.1`
    Man,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: Option<DrillCommand>,
    /// Policy name
    #[arg(required_unless_present = "system")]
    pub policy: Option<String>,
    /// Drill a whole system (a file under systems/): every member restored at a common
    /// point in time, each checked, then the system's checks across all of them
    #[arg(long, value_name = "NAME", conflicts_with_all = ["policy", "snapshot", "random", "keep", "from"])]
    pub system: Option<String>,
    /// Restore this snapshot (id or unique prefix) instead of the newest
    #[arg(long, conflicts_with = "random")]
    pub snapshot: Option<String>,
    /// Restore a snapshot chosen at random among those retention keeps
    #[arg(long)]
    pub random: bool,
    /// Leave the scratch target in place afterwards, for investigation
    #[arg(long)]
    pub keep: bool,
    /// Restore from this repository: the policy's own, one of its copies, or `rotate`
    /// (default: `[drill] from`, else the policy's own)
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Print a recorded drill's report
    Show {
        /// Drill id (or a unique prefix)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a principal with a role; prints it once, alone on the last line
    Create {
        /// Who the token speaks for (an e-mail address or a name), as the audit log records it
        #[arg(long)]
        principal: String,
        /// operator, recovery-owner, approver or auditor
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The daemon's address [default: from `[api] listen` in the configuration, else
    /// http://127.0.0.1:8470]
    #[arg(long, env = "BACKSTOP_API_URL", global = true)]
    pub api_url: Option<String>,
    /// An API token (`backstop token create`)
    #[arg(long, env = "BACKSTOP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: RequestCommand,
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Ask for a restore (as the policy's recovery owner)
    Create {
        /// The policy whose snapshot to restore
        #[arg(long)]
        policy: String,
        /// A snapshot id (or unique prefix)
        #[arg(long, conflicts_with = "at", required_unless_present = "at")]
        snapshot: Option<String>,
        /// A point in time (UTC timestamp): the newest snapshot at or before it
        #[arg(long)]
        at: Option<String>,
        /// Where to restore: a directory, a database URL (no password), or a SQLite file
        #[arg(long)]
        to: String,
        /// Why the restore is needed (the approver reads it; the audit log keeps it)
        #[arg(long)]
        reason: String,
        /// Allow a target that is, or overlaps, the source (the approver sees this)
        #[arg(long)]
        allow_overlap: bool,
        /// Do not run before this UTC timestamp
        #[arg(long)]
        not_before: Option<String>,
    },
    /// List restore requests
    List,
    /// Approve a request (as an approver of its policy, not its requester)
    Approve {
        /// The request's id (`request list` shows them)
        id: String,
        /// A note kept with the decision
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request
    Reject {
        /// The request's id (`request list` shows them)
        id: String,
        /// Why, kept with the decision and sent to the requester
        #[arg(long)]
        comment: Option<String>,
    },
    /// Run an approved request now (operator, or the requester), as a job of the daemon;
    /// follows it to its end unless --no-wait
    Run {
        /// The request's id (`request list` shows them)
        id: String,
        /// Return as soon as the daemon has started it (follow it with `request list`)
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write evidence.json, evidence.html and a signed manifest for a period into DIR
    Export {
        /// Start of the period: a date (2026-11-01, midnight UTC) or a UTC timestamp
        #[arg(long)]
        from: String,
        /// End of the period: a date (the whole day is included) or a UTC timestamp
        #[arg(long)]
        to: String,
        /// Only these policies (repeatable) [default: all]
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        /// A new or empty directory
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an evidence pack's signature and every file's digest, offline
    Verify {
        /// The directory `evidence export` wrote, or the .tar the web console downloads
        #[arg(value_name = "PACK")]
        dir: PathBuf,
        /// The installation's public key (hex, as `evidence public-key` prints it); without
        /// it the pack is checked against the key it carries
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Print the installation's evidence signing public key (made on first use)
    PublicKey,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain and compare it with the anchors in the
    /// repositories; names the first event that does not fit
    Verify,
    /// Write the chain's head to every repository now (the daemon does it hourly)
    Anchor,
    /// List audit events, oldest first
    List {
        /// Only events after this sequence number
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// How many to list
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy file; errors name the file, line and column
    Check {
        /// Policies directory [default: `policies` from the configuration]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Index every pack that no readable index object lists, from the pack's own header
    /// (after an index object was lost or damaged; `check` names such packs), into one new
    /// index object
    Index {
        /// Only this configured repository
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Record every snapshot the configured repositories hold, and forget those they no
    /// longer hold (the repositories are the truth; the catalog is a record of them)
    Rebuild,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id or a unique prefix of it (at least 4 hex digits)
    pub snapshot: String,
    /// Target: a directory (absent or empty); for database snapshots a database URL
    /// (postgres://…/DB, mysql://…/DB: created when missing), or for SQLite a file path
    #[arg(long, value_name = "DIR|URL|FILE")]
    pub to: String,
    /// Write into a non-empty directory, replace an existing SQLite file, or replace the
    /// dump's objects in a database that already holds some. Never allows restoring over
    /// a source (see --replace-source); symlinks already in the target are replaced, not
    /// followed
    #[arg(long)]
    pub force: bool,
    /// Restore over a source on purpose: allow a target that is, is inside, or holds the
    /// snapshot's recorded source or a configured policy's source (the same database in any
    /// spelling, the same path, a path inside it or a parent of it). Without it such a
    /// target is refused, with or without --force; with it the output names the source
    /// replaced, and the replacement is recorded in the audit log when there is a catalog
    #[arg(long)]
    pub replace_source: bool,
    /// Parallel load jobs: pg_restore processes loading a PostgreSQL dump's tables side by
    /// side and building its indexes, keys and constraints; for MariaDB, clients loading
    /// whole tables side by side (1 loads a custom-format or MariaDB dump in one pass)
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
    /// Restore only the paths that match GLOB, or lie in a directory that does (files and
    /// config snapshots; repeatable), e.g. `app/static` or `**/*.csv`
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out the paths that match GLOB, or lie in a directory that does (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Restore only these tables of a database snapshot (schema.table or table; comma
    /// separated or repeated): each with its data, indexes, constraints, defaults and
    /// triggers, and no other table
    #[arg(long = "table", value_name = "TABLE", value_delimiter = ',', conflicts_with_all = ["include", "exclude"])]
    pub tables: Vec<String>,
    /// Look for the snapshot only in this configured repository (its name in backstop.toml)
    #[arg(long, value_name = "NAME", conflicts_with = "repo")]
    pub repository: Option<String>,
    /// Break-glass: the repository by its URL (file://PATH or s3://BUCKET/PREFIX), with no
    /// configuration or catalog at all (not a name: see --repository)
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// With --repo: the S3 endpoint of an S3-compatible store
    #[arg(long, requires = "repo")]
    pub endpoint: Option<String>,
    /// With --repo: the S3 region
    #[arg(long, requires = "repo")]
    pub region: Option<String>,
    /// With --repo: path-style S3 addressing
    #[arg(long, requires = "repo")]
    pub path_style: bool,
    /// With --repo: file holding the repository key
    #[arg(long, requires = "repo", conflicts_with = "key_env")]
    pub key_file: Option<PathBuf>,
    /// With --repo: environment variable holding the repository key
    #[arg(long, requires = "repo")]
    pub key_env: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and every argument of every subcommand says what it is in `--help`.
    #[test]
    fn every_argument_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{sub_path} (the subcommand)"));
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "backstop", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:#?}");
    }
}
