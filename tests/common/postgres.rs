//! The PostgreSQL oracle the differential tests compare with: a real server (Debian's package,
//! started by `scripts/postgres`, or the one `TRIBUTARY_POSTGRES_URL` names), and answers read
//! the way a client sees them, compared cell by cell.

use std::process::Command;
use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use rust_decimal::{Decimal, RoundingStrategy};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The oracle's connection string; `scripts/postgres start` runs once per test process.
pub fn postgres_url() -> Result<String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("TRIBUTARY_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres");
            match Command::new(script).arg("start").status() {
                Ok(status) if status.success() => {
                    Ok("host=127.0.0.1 port=5499 user=postgres dbname=postgres".to_string())
                }
                Ok(status) => Err(format!("scripts/postgres start failed: {status}")),
                Err(error) => Err(format!("cannot run scripts/postgres: {error}")),
            }
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

pub async fn postgres() -> Result<Client> {
    let url = tokio::task::spawn_blocking(postgres_url).await??;
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .with_context(|| format!("connect to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// How a column's cells are compared.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// Within a relative 1e-9: sums in another order differ in their last digits.
    Float,
    /// By value, to the coarser of the two scales: Postgres chooses the scale of a division
    /// (avg) from its operands' digits (16 to 20 fractional digits), which a column of one
    /// scale cannot follow. The values must agree to the digits both show.
    Numeric,
    Exact,
}

pub type Answer = (Vec<Vec<Option<String>>>, Vec<Kind>);

/// The rows of `query` as text cells, sorted, and how each column compares.
pub async fn answer(client: &Client, query: &str) -> Result<Answer> {
    let statement = client
        .prepare(query)
        .await
        .with_context(|| format!("prepare {query}"))?;
    let kinds: Vec<Kind> = statement
        .columns()
        .iter()
        .map(|column| match *column.type_() {
            Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
            Type::NUMERIC => Kind::Numeric,
            _ => Kind::Exact,
        })
        .collect();
    let mut rows = Vec::new();
    for message in client
        .simple_query(query)
        .await
        .with_context(|| query.to_string())?
    {
        if let SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|index| match (row.get(index), kinds.get(index)) {
                        // -0 equals 0, and DISTINCT or GROUP BY may keep either.
                        (Some("-0"), Some(Kind::Float)) => Some("0".to_string()),
                        (cell, _) => cell.map(str::to_string),
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    rows.sort();
    Ok((rows, kinds))
}

/// Whether the two answers agree, column by column as [`Kind`] says (either side's float or
/// numeric type is enough to compare a column so).
pub fn agree(tributary: &Answer, postgres: &Answer) -> bool {
    let (ours, our_kinds) = tributary;
    let (theirs, their_kinds) = postgres;
    let kind = |column: usize| {
        let kinds = [our_kinds.get(column), their_kinds.get(column)];
        if kinds.contains(&Some(&Kind::Float)) {
            Kind::Float
        } else if kinds.contains(&Some(&Kind::Numeric)) {
            Kind::Numeric
        } else {
            Kind::Exact
        }
    };
    let same_cell = |column: usize, a: &Option<String>, b: &Option<String>| {
        let (Some(a), Some(b)) = (a, b) else {
            return a == b;
        };
        match kind(column) {
            Kind::Float => match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                _ => a == b,
            },
            Kind::Numeric => match (Decimal::from_str(a), Decimal::from_str(b)) {
                (Ok(x), Ok(y)) => {
                    let scale = x.scale().min(y.scale());
                    let round = |value: Decimal| {
                        value.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
                    };
                    round(x) == round(y)
                }
                _ => a == b,
            },
            Kind::Exact => a == b,
        }
    };
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(a, b)| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .enumerate()
                    .all(|(column, (a, b))| same_cell(column, a, b))
        })
}
