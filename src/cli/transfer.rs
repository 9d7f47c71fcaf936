//! `customers import` and `customers export`: NDJSON in and out, one
//! customer per line in the API's shapes. Import validates every line with
//! the API's rules and writes in batched transactions; export streams in
//! constant memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc::error::TryRecvError;
use uuid::Uuid;

use crate::config::DatabaseArgs;
use crate::domain::body::{self, Shape};
use crate::domain::customer::CustomerInput;
use crate::domain::ids::AccountId;
use crate::domain::listing::{CustomerFilter, ListParams, TypeFilter};
use crate::store::{now_micros, BatchImport, ImportOutcome, ImportRow, OnRejected};

#[derive(Args, Debug)]
pub struct ImportOpts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The account the customers go into, e.g. T00000001.
    #[arg(long, value_parser = super::parse_account)]
    pub account: AccountId,
    /// NDJSON file, or `-` for standard input.
    #[arg(long, default_value = "-")]
    pub file: String,
    /// Write nothing unless every line is valid (the file is checked first);
    /// stop at the first conflict found while writing.
    #[arg(long)]
    pub strict: bool,
    /// Customers per batch [default: 20,000 where a batch is a transaction
    /// (PostgreSQL, or --strict), 5,000 where a transaction spans batches
    /// (SQLite), which only makes the importer hold less].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Recorded as `created_by`.
    #[arg(long, default_value = "import")]
    pub actor: String,
}

#[derive(Args, Debug)]
pub struct ExportOpts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The account whose customers are written, e.g. T00000001.
    #[arg(long, value_parser = super::parse_account)]
    pub account: AccountId,
    /// Also export deleted customers (in their erased form).
    #[arg(long)]
    pub include_deleted: bool,
}

/// Namespace of the ids given to imported lines without a `customer_id`: the
/// same line imported twice gets the same id, so a re-run adds nothing.
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_5e1c_9d4b_4a53_8f7e_2b1d_3c4a_5e6f);

/// A line turned into a row, or why not. `Ok(None)`: nothing to import
/// (blank, or an exported deleted record).
pub fn parse_line(account: &AccountId, line_no: u64, line: &str) -> Result<Option<ImportRow>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let mut input: CustomerInput = body::parse(trimmed.as_bytes(), Shape::Object).map_err(|error| error.describe())?;
    if input.deleted_at.is_some() {
        return Ok(None);
    }
    // An Argon2 hash per line would make an import of a million customers
    // take hours; a password or PIN is set through the API.
    if !input.take_secrets().is_absent() {
        return Err("password and pin cannot be imported; set them through the API".to_owned());
    }
    let (customer_id, data) = input.into_new(now_micros()).map_err(|errors| {
        errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
    })?;
    let customer_id = customer_id
        .unwrap_or_else(|| Uuid::new_v5(&IMPORT_NAMESPACE, format!("{account}\n{trimmed}").as_bytes()).to_string());
    Ok(Some(ImportRow::new(line_no, customer_id, data)))
}

fn open_input(file: &str) -> io::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if file == "-" {
        Ok((Box::new(io::stdin()), None))
    } else {
        let f = File::open(PathBuf::from(file))?;
        let size = f.metadata().ok().map(|m| m.len());
        Ok((Box::new(f), size))
    }
}

fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:40} {percent:>3}%  {msg}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[derive(Default)]
struct Totals {
    lines: u64,
    inserted: u64,
    existing: u64,
    rejected: Vec<(u64, String)>,
}

impl Totals {
    fn add(&mut self, outcome: ImportOutcome) {
        self.inserted += outcome.inserted;
        self.existing += outcome.existing.len() as u64;
        self.rejected.extend(outcome.rejected);
    }
}

/// A parsed batch from the reader thread, with its progress so far, and
/// the read error that ended the input early, if any (sent with the lines
/// read before it, which are imported).
struct Parsed {
    rows: Vec<ImportRow>,
    rejected: Vec<(u64, String)>,
    lines: u64,
    bytes: u64,
    error: Option<io::Error>,
}

impl Parsed {
    fn after(lines: u64, bytes: u64, batch_size: usize) -> Self {
        Self { rows: Vec::with_capacity(batch_size), rejected: Vec::new(), lines, bytes, error: None }
    }
}

/// Reads and validates lines on a blocking thread, sending batches down a
/// short channel: parsing one batch overlaps writing the previous one.
fn spawn_reader(
    input: Box<dyn Read + Send>,
    account: AccountId,
    batch_size: usize,
) -> (tokio::sync::mpsc::Receiver<Parsed>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let handle = tokio::task::spawn_blocking(move || {
        let mut parsed = Parsed::after(0, 0, batch_size);
        for line in BufReader::new(input).lines() {
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    parsed.error = Some(error);
                    break;
                }
            };
            parsed.lines += 1;
            parsed.bytes += line.len() as u64 + 1;
            match parse_line(&account, parsed.lines, &line) {
                Ok(Some(row)) => parsed.rows.push(row),
                Ok(None) => {}
                Err(reason) => parsed.rejected.push((parsed.lines, reason)),
            }
            if parsed.rows.len() >= batch_size {
                let next = Parsed::after(parsed.lines, parsed.bytes, batch_size);
                if tx.blocking_send(std::mem::replace(&mut parsed, next)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.blocking_send(parsed);
    });
    (rx, handle)
}

pub async fn import(opts: ImportOpts) -> anyhow::Result<()> {
    if opts.strict {
        let invalid = check_all_lines(&opts)?;
        if !invalid.is_empty() {
            report_rejected(&invalid);
            anyhow::bail!("--strict: {} invalid line(s); nothing was imported", invalid.len());
        }
    }
    let store = opts.db.open_bulk().await?;
    store.migrate().await?;
    let started = Instant::now();
    let (input, size) = open_input(&opts.file)?;
    let bar = progress_bar(size);
    let mut totals = Totals::default();
    let on_rejected = if opts.strict { OnRejected::RollBack } else { OnRejected::KeepTheRest };
    let mut import = store.batch_import(&opts.account, &opts.actor, on_rejected);
    let batch_size = opts.batch_size.unwrap_or_else(|| import.default_batch_size()).max(1);
    let (mut batches, reader) = spawn_reader(input, opts.account.clone(), batch_size);
    let mut read_error = None;
    while let Some(mut window) = next_window(&mut batches, &mut *import).await? {
        let last = window.last().map(|parsed| (parsed.lines, parsed.bytes)).unwrap_or_default();
        read_error = window.last_mut().and_then(|parsed| parsed.error.take());
        let mut rows = Vec::with_capacity(window.len());
        for parsed in window {
            totals.rejected.extend(parsed.rejected);
            rows.push(parsed.rows);
        }
        totals.lines = last.0;
        write_batches(&mut *import, opts.strict, rows, &mut totals).await?;
        bar.set_position(last.1);
        let rate = totals.inserted as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{} customers, {rate:.0}/s", totals.inserted));
        if read_error.is_some() {
            // The input ends here; what was read before the error is valid
            // and is kept, with the same ending as a complete import.
            break;
        }
    }
    import.commit().await?;
    reader.await?;
    if totals.inserted > 0 {
        bar.set_message("refreshing statistics");
        store.analyze().await?;
    }
    bar.finish_and_clear();
    store.close().await;

    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} customers in {seconds:.1} s ({:.0}/s); {} already present; {} rejected; {} lines read",
        totals.inserted,
        totals.inserted as f64 / seconds.max(0.001),
        totals.existing,
        totals.rejected.len(),
        totals.lines
    );
    totals.rejected.sort();
    report_rejected(&totals.rejected);
    if let Some(error) = read_error {
        return Err(anyhow::Error::new(error).context(format!(
            "reading line {}: {} customers imported before it",
            totals.lines + 1,
            totals.inserted
        )));
    }
    if !totals.rejected.is_empty() {
        anyhow::bail!("{} line(s) were not imported", totals.rejected.len());
    }
    Ok(())
}

/// As many parsed batches as the import writes at once, fewer only at
/// the end of the input; `None` after it. Before it waits for the reader,
/// it commits what is written: an open transaction would hold SQLite's
/// write lock, which a serving process's writes wait for, as long as the
/// input takes. (On PostgreSQL, where a window is two batches, a pause in
/// the input thus holds one parsed batch back, and no lock.)
async fn next_window(
    batches: &mut tokio::sync::mpsc::Receiver<Parsed>,
    import: &mut dyn BatchImport,
) -> anyhow::Result<Option<Vec<Parsed>>> {
    let n = import.batches_at_once();
    let mut window = Vec::with_capacity(n);
    while window.len() < n {
        let next = match batches.try_recv() {
            Ok(parsed) => Some(parsed),
            Err(TryRecvError::Empty) => {
                import.commit().await?;
                batches.recv().await
            }
            Err(TryRecvError::Disconnected) => None,
        };
        match next {
            Some(parsed) => window.push(parsed),
            None => break,
        }
    }
    Ok((!window.is_empty()).then_some(window))
}

async fn write_batches(
    import: &mut dyn BatchImport,
    strict: bool,
    batches: Vec<Vec<ImportRow>>,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let batches: Vec<_> = batches.into_iter().filter(|rows| !rows.is_empty()).collect();
    if batches.is_empty() {
        return Ok(());
    }
    for outcome in import.write(batches).await? {
        if strict && !outcome.rejected.is_empty() {
            report_rejected(&outcome.rejected);
            anyhow::bail!("--strict: stopped at a conflict; this batch was rolled back, earlier ones are stored");
        }
        totals.add(outcome);
    }
    Ok(())
}

/// The strict pre-check: every line parsed and validated, nothing written.
fn check_all_lines(opts: &ImportOpts) -> anyhow::Result<Vec<(u64, String)>> {
    anyhow::ensure!(opts.file != "-", "--strict needs --file (the file is read twice)");
    let (input, _) = open_input(&opts.file)?;
    let mut invalid = Vec::new();
    for (i, line) in BufReader::new(input).lines().enumerate() {
        if let Err(reason) = parse_line(&opts.account, i as u64 + 1, &line?) {
            invalid.push((i as u64 + 1, reason));
        }
    }
    Ok(invalid)
}

fn report_rejected(rejected: &[(u64, String)]) {
    const SHOWN: usize = 100;
    for (line, reason) in rejected.iter().take(SHOWN) {
        eprintln!("line {line}: {reason}");
    }
    if rejected.len() > SHOWN {
        eprintln!("… and {} more", rejected.len() - SHOWN);
    }
}

pub async fn export(opts: ExportOpts) -> anyhow::Result<()> {
    let store = opts.db.open().await?;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut params = ListParams {
        filter: CustomerFilter { types: TypeFilter::Any, include_deleted: opts.include_deleted, ..Default::default() },
        limit: 1000,
        starting_after: None,
        total: false,
    };
    loop {
        let page = store.list_customers(&opts.account, &params).await?;
        let mut lines = Vec::new();
        for customer in &page.customers {
            customer.write_json(&mut lines);
            lines.push(b'\n');
        }
        out.write_all(&lines)?;
        match page.customers.last() {
            Some(last) if page.has_more => params.starting_after = Some(last.id),
            _ => break,
        }
    }
    out.flush()?;
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("T00000001").unwrap()
    }

    #[test]
    fn lines_without_customer_id_get_the_same_id_every_time() {
        let line = r#"{"email": "a@x.io"}"#;
        let first = parse_line(&account(), 1, line).unwrap().unwrap();
        let again = parse_line(&account(), 7, line).unwrap().unwrap();
        assert_eq!(first.customer_id, again.customer_id);
        let other = parse_line(&AccountId::parse("T00000002").unwrap(), 1, line).unwrap().unwrap();
        assert_ne!(first.customer_id, other.customer_id);
    }

    #[test]
    fn bad_lines_say_why_and_blank_or_deleted_lines_are_skipped() {
        assert!(parse_line(&account(), 1, "   ").unwrap().is_none());
        let deleted = r#"{"id": "01a20991-ec60-71ca-9acf-eb3795830f0c", "customer_id": "x", "deleted_at": "2026-01-01T00:00:00Z"}"#;
        assert!(parse_line(&account(), 1, deleted).unwrap().is_none());
        assert!(parse_line(&account(), 1, "{nope").unwrap_err().contains("not valid JSON"));
        assert!(parse_line(&account(), 1, r#"{"email": "bad"}"#).unwrap_err().starts_with("email:"));
        assert!(parse_line(&account(), 1, r#"{"emial": "a@x.io"}"#).unwrap_err().starts_with("emial:"));
    }
}
