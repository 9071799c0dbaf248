//! The price book (docs/kpis.md): an effective-dated CSV of list prices, parsed
//! into exact decimals. [`PriceBook::price`] is the formula itself: the
//! `attempts` view prices with it (`attempt_cost`) and the ingester's spend
//! counter with [`PriceBook::attempt_cost`]; the book is also queryable as
//! the `price_book` table.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::DateTime;
use datafusion::datasource::MemTable;
use gatemeter_schema::{EpochMicros, Usd};

use crate::error::QueryError;

pub const HEADER: &[&str] = &[
    "provider",
    "model",
    "effective_from",
    "input_per_1m",
    "output_per_1m",
    "cache_read_per_1m",
    "cache_write_per_1m",
    "request_fee",
    "web_search_per_1k",
];

/// One row: the prices of (provider, model) from `effective_from` until the
/// next row of the same pair (`effective_to`, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub effective_from: EpochMicros,
    pub effective_to: Option<EpochMicros>,
    pub input_per_1m: Usd,
    pub output_per_1m: Usd,
    pub cache_read_per_1m: Usd,
    pub cache_write_per_1m: Usd,
    pub request_fee: Usd,
    pub web_search_per_1k: Usd,
}

/// Token and unit counts of one attempt; `None` is "not reported", priced as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cache_read: Option<i64>,
    pub cache_write: Option<i64>,
    pub web_search_requests: Option<i64>,
}

/// How one attempt is priced ([`PriceBook::pricing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing<'a> {
    Unbilled,
    Reported(Usd),
    Book(&'a PriceRow),
    Unpriced,
}

impl Pricing<'_> {
    /// The cost: 0 unbilled, the reported cost, the book's price of
    /// `usage` (read only for a book price); `None` when unpriced.
    pub fn cost(&self, usage: impl FnOnce() -> Usage) -> Option<Usd> {
        match self {
            Pricing::Unbilled => Some(Usd(0)),
            Pricing::Reported(cost) => Some(*cost),
            Pricing::Book(row) => Some(PriceBook::price(row, usage())),
            Pricing::Unpriced => None,
        }
    }

    /// The `cost_source` value.
    pub fn source(&self) -> &'static str {
        match self {
            Pricing::Unbilled => "unbilled",
            Pricing::Reported(_) => "reported",
            Pricing::Book(_) => "price_book",
            Pricing::Unpriced => "unpriced",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceBook {
    rows: Vec<PriceRow>,
}

fn bad(line: usize, column: &str, reason: impl Into<String>) -> QueryError {
    QueryError::PriceBook {
        line,
        column: column.to_owned(),
        reason: reason.into(),
    }
}

impl PriceBook {
    /// Parses the CSV text; errors name the line and the column.
    pub fn parse(text: &str) -> Result<PriceBook, QueryError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .map(|(_, h)| h.split(',').map(str::trim).collect())
            .unwrap_or_default();
        if header != HEADER {
            return Err(bad(1, "header", format!("expected `{}`", HEADER.join(","))));
        }
        let mut rows = Vec::new();
        for (index, line) in lines {
            let number = index + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != HEADER.len() {
                return Err(bad(
                    number,
                    "row",
                    format!("{} columns, expected {}", fields.len(), HEADER.len()),
                ));
            }
            let money = |i: usize| -> Result<Usd, QueryError> {
                match Usd::parse(fields[i]) {
                    Some(usd) if usd.0 >= 0 => Ok(usd),
                    _ => Err(bad(
                        number,
                        HEADER[i],
                        format!("`{}` is not a non-negative decimal", fields[i]),
                    )),
                }
            };
            let effective_from = DateTime::parse_from_rfc3339(fields[2])
                .map_err(|e| bad(number, "effective_from", format!("`{}`: {e}", fields[2])))?
                .timestamp_micros();
            for (i, name) in [(0, "provider"), (1, "model")] {
                if fields[i].is_empty() {
                    return Err(bad(number, name, "empty"));
                }
            }
            rows.push(PriceRow {
                provider: fields[0].to_owned(),
                model: fields[1].to_owned(),
                effective_from,
                effective_to: None,
                input_per_1m: money(3)?,
                output_per_1m: money(4)?,
                cache_read_per_1m: money(5)?,
                cache_write_per_1m: money(6)?,
                request_fee: money(7)?,
                web_search_per_1k: money(8)?,
            });
        }
        PriceBook::from_rows(rows)
    }

    /// Orders rows and fills each one's `effective_to` from the next row of
    /// the same (provider, model). Two rows at the same instant are an error.
    pub fn from_rows(mut rows: Vec<PriceRow>) -> Result<PriceBook, QueryError> {
        rows.sort_by(|a, b| {
            (&a.provider, &a.model, a.effective_from).cmp(&(
                &b.provider,
                &b.model,
                b.effective_from,
            ))
        });
        let mut next_from: BTreeMap<(String, String), EpochMicros> = BTreeMap::new();
        for row in rows.iter_mut().rev() {
            let key = (row.provider.clone(), row.model.clone());
            if next_from.get(&key) == Some(&row.effective_from) {
                return Err(bad(
                    0,
                    "effective_from",
                    format!(
                        "{}/{} has two rows at the same time",
                        row.provider, row.model
                    ),
                ));
            }
            row.effective_to = next_from.insert(key, row.effective_from);
        }
        Ok(PriceBook { rows })
    }

    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    /// An attempt's cost as the `attempts` view computes it: 0 when not
    /// billed, the reported cost, else the book's price for (provider,
    /// served model or requested model) at `attempt_start`; `None` when
    /// unpriced.
    pub fn attempt_cost(&self, event: &gatemeter_schema::AttemptEvent) -> Option<Usd> {
        let model = event
            .served_model
            .as_deref()
            .unwrap_or(&event.requested_model);
        self.pricing(event.billed, event.cost_usd, || {
            Some((event.provider.as_str(), model, event.attempt_start))
        })
        .cost(|| Usage {
            input: event.input_tokens,
            output: event.output_tokens,
            cache_read: event.cache_read_tokens,
            cache_write: event.cache_write_tokens,
            web_search_requests: event.web_search_requests,
        })
    }

    /// How an attempt is priced, by the rules of docs/kpis.md in order: not
    /// `billed`, its `reported` cost, the book's row for what `lookup`
    /// gives (provider, served model else requested model, attempt start;
    /// asked only when the first two rules do not apply, `None` when one
    /// of them is missing), else unpriced.
    pub fn pricing<'s>(
        &self,
        billed: bool,
        reported: Option<Usd>,
        lookup: impl FnOnce() -> Option<(&'s str, &'s str, EpochMicros)>,
    ) -> Pricing<'_> {
        if !billed {
            Pricing::Unbilled
        } else if let Some(cost) = reported {
            Pricing::Reported(cost)
        } else {
            lookup()
                .and_then(|(provider, model, at)| self.row_at(provider, model, at))
                .map_or(Pricing::Unpriced, Pricing::Book)
        }
    }

    /// The row in force for (provider, model) at `at`: the pair's last row
    /// that starts by then (rows are ordered by provider, model and
    /// `effective_from`, so a binary search finds it).
    pub fn row_at(&self, provider: &str, model: &str, at: EpochMicros) -> Option<&PriceRow> {
        let after = self.rows.partition_point(|r| {
            (r.provider.as_str(), r.model.as_str(), r.effective_from) <= (provider, model, at)
        });
        let row = self.rows.get(after.checked_sub(1)?)?;
        (row.provider == provider
            && row.model == model
            && row.effective_to.is_none_or(|to| at < to))
        .then_some(row)
    }

    /// The docs/kpis.md formula, exactly:
    /// ((input − cache_read − cache_write) × input_per_1m + cache_read ×
    /// cache_read_per_1m + cache_write × cache_write_per_1m + output ×
    /// output_per_1m) ÷ 1e6 + request_fee + web_search_requests ×
    /// web_search_per_1k ÷ 1000. Rounded half away from zero to 1e-9 USD.
    pub fn price(row: &PriceRow, usage: Usage) -> Usd {
        let n = |v: Option<i64>| i128::from(v.unwrap_or(0));
        let (input, output, cache_read, cache_write) = (
            n(usage.input),
            n(usage.output),
            n(usage.cache_read),
            n(usage.cache_write),
        );
        // Prices are in 1e-9 USD units; token sums × price ÷ 1e6 stays exact
        // in i128 until the final rounding.
        let token_cost_scaled = (input - cache_read - cache_write) * row.input_per_1m.0
            + cache_read * row.cache_read_per_1m.0
            + cache_write * row.cache_write_per_1m.0
            + output * row.output_per_1m.0;
        let search_cost_scaled = n(usage.web_search_requests) * row.web_search_per_1k.0 * 1000;
        let total_scaled = token_cost_scaled + search_cost_scaled; // units of 1e-15 USD
        let rounded = (total_scaled + total_scaled.signum() * 500_000) / 1_000_000;
        Usd(rounded + row.request_fee.0)
    }
}

/// Loads the price book named in the config (an empty book when none is).
pub fn load_price_book(path: Option<&Path>) -> Result<PriceBook, QueryError> {
    match path {
        None => Ok(PriceBook::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| QueryError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            PriceBook::parse(&text)
        }
    }
}

/// The book as the `price_book` table: its CSV columns, with each row's
/// `effective_to` (the next row's `effective_from` for the same pair).
pub(crate) fn price_book_table(book: &PriceBook) -> Result<MemTable, QueryError> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let money = DataType::Decimal128(Usd::PRECISION, Usd::SCALE as i8);
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("effective_from", ts.clone(), false),
        Field::new("effective_to", ts, true),
        Field::new("input_per_1m", money.clone(), false),
        Field::new("output_per_1m", money.clone(), false),
        Field::new("cache_read_per_1m", money.clone(), false),
        Field::new("cache_write_per_1m", money.clone(), false),
        Field::new("request_fee", money.clone(), false),
        Field::new("web_search_per_1k", money, false),
    ]));
    let rows = book.rows();
    let mut provider = StringBuilder::new();
    let mut model = StringBuilder::new();
    let ts_builder = || TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let (mut from, mut to) = (ts_builder(), ts_builder());
    let money_builder = || -> Result<Decimal128Builder, QueryError> {
        Ok(Decimal128Builder::with_capacity(rows.len())
            .with_precision_and_scale(Usd::PRECISION, Usd::SCALE as i8)?)
    };
    let mut per_1m: Vec<Decimal128Builder> =
        (0..6).map(|_| money_builder()).collect::<Result<_, _>>()?;
    for row in rows {
        provider.append_value(&row.provider);
        model.append_value(&row.model);
        from.append_value(row.effective_from);
        to.append_option(row.effective_to);
        let prices = [
            row.input_per_1m,
            row.output_per_1m,
            row.cache_read_per_1m,
            row.cache_write_per_1m,
            row.request_fee,
            row.web_search_per_1k,
        ];
        for (builder, price) in per_1m.iter_mut().zip(prices) {
            builder.append_value(price.0);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(provider.finish()),
        Arc::new(model.finish()),
        Arc::new(from.finish()),
        Arc::new(to.finish()),
    ];
    columns.extend(per_1m.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOK: &str = "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\n\
        openai,gpt-4o,2025-01-01T00:00:00Z,2.5,10,1.25,3.125,0,10\n\
        openai,gpt-4o,2026-11-01T12:00:00Z,2,8,1,2.5,0.0001,10\n\
        acme,m,2025-01-01T00:00:00Z,5,5,5,5,0,0\n";

    fn at(text: &str) -> EpochMicros {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .timestamp_micros()
    }

    #[test]
    fn the_row_in_force_follows_the_dates() {
        let book = PriceBook::parse(BOOK).expect("parses");
        let before = book
            .row_at("openai", "gpt-4o", at("2026-11-01T11:59:59Z"))
            .expect("row");
        assert_eq!(before.input_per_1m, Usd::parse("2.5").expect("usd"));
        assert_eq!(before.effective_to, Some(at("2026-11-01T12:00:00Z")));
        let after = book
            .row_at("openai", "gpt-4o", at("2026-11-01T12:00:00Z"))
            .expect("row");
        assert_eq!(after.input_per_1m, Usd::parse("2").expect("usd"));
        assert!(book
            .row_at("openai", "gpt-4o", at("2024-01-01T00:00:00Z"))
            .is_none());
        assert!(book
            .row_at("openai", "gpt-5", at("2026-01-01T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn the_row_in_force_is_the_pairs_last_to_start_and_none_before_its_first() {
        let book = PriceBook::parse(
            "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\n\
             p,m,2026-01-01T00:00:00Z,1,1,0,0,0,0\n\
             p,m,2026-02-01T00:00:00Z,2,2,0,0,0,0\n\
             p,n,2026-01-15T00:00:00Z,3,3,0,0,0,0\n",
        )
        .expect("parses");
        let price_at = |model: &str, time: &str| {
            book.row_at("p", model, at(time))
                .map(|row| row.input_per_1m)
        };
        let usd = |text: &str| Usd::parse(text);
        assert_eq!(price_at("m", "2025-12-31T23:59:59Z"), None);
        assert_eq!(price_at("m", "2026-01-01T00:00:00Z"), usd("1"));
        assert_eq!(price_at("m", "2026-01-31T23:59:59Z"), usd("1"));
        assert_eq!(price_at("m", "2026-02-01T00:00:00Z"), usd("2"));
        assert_eq!(price_at("n", "2026-01-14T00:00:00Z"), None);
        assert_eq!(price_at("n", "2027-01-01T00:00:00Z"), usd("3"));
        assert_eq!(price_at("o", "2027-01-01T00:00:00Z"), None);
        assert!(book.row_at("q", "m", at("2027-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn the_formula_is_exact() {
        let book = PriceBook::parse(BOOK).expect("parses");
        // The seeds' worked example: 1,000 tokens at $5 per 1M cost $0.005.
        let acme = book
            .row_at("acme", "m", at("2026-01-01T00:00:00Z"))
            .expect("row");
        let usage = Usage {
            input: Some(600),
            output: Some(400),
            ..Usage::default()
        };
        assert_eq!(
            PriceBook::price(acme, usage),
            Usd::parse("0.005").expect("usd")
        );
        // Cache reads and writes come out of input; searches and fees add on.
        let row = book
            .row_at("openai", "gpt-4o", at("2026-11-02T00:00:00Z"))
            .expect("row");
        let usage = Usage {
            input: Some(10_000),
            output: Some(500),
            cache_read: Some(4_000),
            cache_write: Some(1_000),
            web_search_requests: Some(2),
        };
        // (5000×2 + 4000×1 + 1000×2.5 + 500×8)/1e6 + 0.0001 + 2×10/1000
        //   = 0.0205 + 0.0001 + 0.02 = 0.0406
        assert_eq!(
            PriceBook::price(row, usage),
            Usd::parse("0.0406").expect("usd")
        );
        // Missing counts are zero: only the fee remains.
        assert_eq!(
            PriceBook::price(row, Usage::default()),
            Usd::parse("0.0001").expect("usd")
        );
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let text = BOOK.replace(
            "acme,m,2025-01-01T00:00:00Z,5,",
            "acme,m,2025-01-01T00:00:00Z,five,",
        );
        let err = PriceBook::parse(&text).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "price book line 4, column input_per_1m: `five` is not a non-negative decimal"
        );
        let err = PriceBook::parse("provider,model\n").expect_err("bad header");
        assert!(err.to_string().contains("header"));
        let twice = format!("{BOOK}acme,m,2025-01-01T00:00:00Z,1,1,1,1,0,0\n");
        assert!(PriceBook::parse(&twice).is_err());
    }

    #[test]
    fn the_shipped_price_book_parses() {
        let text = include_str!("../../../config/prices.csv");
        let book = PriceBook::parse(text).expect("config/prices.csv parses");
        assert!(book.rows().len() >= 12);
    }
}
