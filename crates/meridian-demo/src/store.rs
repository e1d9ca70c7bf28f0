//! Users, positions and orders in PostgreSQL: writes through the region's writer
//! endpoints, reads from the region's own replica unless it has not yet replayed the
//! reader's last write.

use crate::pool::{Login, Pool, PoolError};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_postgres::types::{ToSql, Type};

/// How long a read waits for the replica to replay the reader's last write before it
/// reads from the writer instead.
pub const REPLAY_WAIT: Duration = Duration::from_secs(1);
/// The longest any one write or read may take: a frozen primary must not hold a request
/// (and its pooled session) forever.
const STATEMENT_DEADLINE: Duration = Duration::from_secs(5);
/// Serialises schema migrations of every instance of every region: each takes this
/// advisory lock (the bytes of "meridian") before it creates what is missing.
const MIGRATION_LOCK: i64 = 0x6d65_7269_6469_616e;
/// Orders shown with a portfolio, newest first.
const RECENT_ORDERS: i64 = 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS positions (
    user_name text NOT NULL REFERENCES users (name),
    symbol text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (user_name, symbol)
);
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    user_name text NOT NULL REFERENCES users (name),
    symbol text NOT NULL,
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity bigint NOT NULL CHECK (quantity > 0),
    price double precision NOT NULL,
    region text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_name, id DESC);
";

/// How an order's time is shown: ISO 8601 in UTC, to the millisecond.
macro_rules! utc {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}

/// A buy: the user (if new), the position (opened or grown) and the order, in one
/// statement. Parameters: user, symbol, side, quantity, price, region.
const BUY: &str = concat!(
    "WITH u AS (INSERT INTO users (name) VALUES ($1) ON CONFLICT DO NOTHING),
     p AS (INSERT INTO positions (user_name, symbol, quantity) VALUES ($1, $2, $4)
           ON CONFLICT (user_name, symbol)
           DO UPDATE SET quantity = positions.quantity + EXCLUDED.quantity
           RETURNING quantity),
     o AS (INSERT INTO orders (user_name, symbol, side, quantity, price, region)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at)
     SELECT o.id, ",
    utc!("o.created_at"),
    ", p.quantity FROM o, p"
);

/// A sell: the position shrinks only if it holds enough, and the order is written only
/// if it did (no row back: too few shares, nothing written). Same parameters as [`BUY`].
const SELL: &str = concat!(
    "WITH p AS (UPDATE positions SET quantity = quantity - $4
           WHERE user_name = $1 AND symbol = $2 AND quantity >= $4
           RETURNING quantity),
     o AS (INSERT INTO orders (user_name, symbol, side, quantity, price, region)
           SELECT $1, $2, $3, $4, $5, $6 FROM p RETURNING id, created_at)
     SELECT o.id, ",
    utc!("o.created_at"),
    ", p.quantity FROM o, p"
);

/// A user's positions and recent orders as two JSON arrays, in one snapshot.
/// Parameters: user, how many orders.
const HOLDINGS: &str = concat!(
    "SELECT
       (SELECT json_agg(json_build_array(symbol, quantity) ORDER BY symbol)
          FROM positions WHERE user_name = $1 AND quantity > 0)::text,
       (SELECT json_agg(o ORDER BY o.id DESC) FROM (
          SELECT id, symbol, side, quantity, price, region, ",
    utc!("created_at"),
    " AS created_at
          FROM orders WHERE user_name = $1 ORDER BY id DESC LIMIT $2) o)::text"
);

/// An order as [`HOLDINGS`] returns it.
#[derive(serde::Deserialize)]
struct StoredOrder {
    id: i64,
    symbol: String,
    side: String,
    quantity: i64,
    price: f64,
    region: String,
    created_at: String,
}

/// Where the demo's data lives. Writers and readers are each tried in order.
#[derive(Clone)]
pub struct DatabaseOptions {
    /// The region's writer endpoints (each leads to the current primary wherever it is).
    pub writers: Vec<SocketAddr>,
    /// PostgreSQL servers to read from, the region's own replica or standby first.
    pub readers: Vec<SocketAddr>,
    pub user: String,
    /// Re-read, so the pools log in with the password of the moment (see [`Login`]).
    pub password: meridian_http::secrets::Secret,
    pub dbname: String,
    /// Sessions kept per endpoint list.
    pub pool_size: usize,
}

impl DatabaseOptions {
    /// The deployment's superuser on the `postgres` database, 4 sessions each way.
    pub fn new(
        writers: Vec<SocketAddr>,
        readers: Vec<SocketAddr>,
        password: meridian_http::secrets::Secret,
    ) -> Self {
        DatabaseOptions {
            writers,
            readers,
            user: "postgres".into(),
            password,
            dbname: "postgres".into(),
            pool_size: 4,
        }
    }
}

impl fmt::Debug for DatabaseOptions {
    /// Everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseOptions")
            .field("writers", &self.writers)
            .field("readers", &self.readers)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// A position in the write-ahead log, as PostgreSQL prints it (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a WAL position; it looks like 16/B374D848 (two hex numbers)")]
pub struct BadLsn(pub String);

impl FromStr for Lsn {
    type Err = BadLsn;
    fn from_str(s: &str) -> Result<Self, BadLsn> {
        let bad = || BadLsn(s.chars().take(40).collect());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_hexdigit()) {
                u32::from_str_radix(p, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        Ok(Lsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// A validated order, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user: String,
    /// Upper case.
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Unavailable(#[from] PoolError),
    #[error("the {pool} did not answer within {after:?}")]
    Timeout { pool: &'static str, after: Duration },
    #[error("the {pool} failed: {source}")]
    Query {
        pool: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the writer's session broke while the order was written: it may or may not be stored")]
    CommitUnknown(#[source] tokio_postgres::Error),
    #[error("{user} holds fewer than {quantity} {symbol}")]
    InsufficientShares {
        user: String,
        symbol: String,
        quantity: i64,
    },
    #[error("the schema is not created yet (the writer has not been reached since start)")]
    NoSchema,
    #[error("the database answered in an unexpected shape: {0}")]
    Shape(String),
}

/// A stored order, as the POST answer and the portfolio show it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub id: i64,
    pub user: String,
    pub symbol: String,
    pub side: String,
    pub quantity: i64,
    pub price: f64,
    /// The region whose instance took the order.
    pub region: String,
    pub created_at: String,
}

/// What a committed order left behind.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: OrderRow,
    /// The user's holding of the symbol after the order.
    pub position: i64,
    /// The writer's WAL position after the commit: a replica that has replayed it holds
    /// the order.
    pub lsn: Lsn,
}

/// Where a read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    Replica,
    Writer,
}

impl ReadFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Replica => "replica",
            ReadFrom::Writer => "writer",
        }
    }
}

/// A user's holdings and recent orders, read in one snapshot.
#[derive(Debug, Clone)]
pub struct Holdings {
    /// (symbol, quantity), quantities above zero, by symbol.
    pub positions: Vec<(String, i64)>,
    pub orders: Vec<OrderRow>,
    pub read_from: ReadFrom,
    /// How long the read waited for the replica to replay the reader's last write.
    pub waited: Duration,
}

/// The demo's PostgreSQL: a writer pool, a reader pool, and the schema made once.
pub struct Store {
    writer: Pool,
    reader: Pool,
    schema: OnceCell<()>,
}

/// Runs `work` within [`STATEMENT_DEADLINE`].
async fn bounded<T>(
    pool: &'static str,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(STATEMENT_DEADLINE, work)
        .await
        .unwrap_or(Err(StoreError::Timeout {
            pool,
            after: STATEMENT_DEADLINE,
        }))
}

impl Store {
    pub fn new(opts: &DatabaseOptions) -> Self {
        let login = Login {
            user: opts.user.clone(),
            password: opts.password.clone(),
            dbname: opts.dbname.clone(),
        };
        // With no reader of its own, a region reads where it writes.
        let readers = if opts.readers.is_empty() {
            &opts.writers
        } else {
            &opts.readers
        };
        Store {
            writer: Pool::new("writer", &opts.writers, &login, true, opts.pool_size),
            reader: Pool::new("reader", readers, &login, false, opts.pool_size),
            schema: OnceCell::new(),
        }
    }

    pub fn schema_ready(&self) -> bool {
        self.schema.initialized()
    }

    /// Why the writer or the reader last failed (None: the last attempt worked).
    pub fn last_errors(&self) -> (Option<String>, Option<String>) {
        (self.writer.last_error(), self.reader.last_error())
    }

    /// Creates the tables once per process, under an advisory lock so instances starting
    /// together do not trip over each other's `CREATE`. A failure is retried by the next
    /// caller.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| bounded("writer", self.migrate()))
            .await
            .map(|_| ())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut session = self.writer.session().await?;
        let result = async {
            let tx = session.client().transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(SCHEMA).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => {
                self.writer.note_ok();
                tracing::info!("demo schema ready");
                Ok(())
            }
            Err(source) => {
                session.keep_or_discard(&source);
                Err(StoreError::Query {
                    pool: "writer",
                    source,
                })
            }
        }
    }

    /// Writes the order and moves the position in one transaction; then reads the WAL
    /// position that covers the commit.
    pub async fn place_order(
        &self,
        order: &NewOrder,
        price: f64,
        region: &str,
    ) -> Result<Placed, StoreError> {
        self.ensure_schema().await?;
        bounded("writer", self.place_order_now(order, price, region)).await
    }

    async fn place_order_now(
        &self,
        order: &NewOrder,
        price: f64,
        region: &str,
    ) -> Result<Placed, StoreError> {
        let mut session = self.writer.session().await?;
        let client = session.client();
        let sql = match order.side {
            Side::Buy => BUY,
            Side::Sell => SELL,
        };
        let side = order.side.as_str();
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&order.user, Type::TEXT),
            (&order.symbol, Type::TEXT),
            (&side, Type::TEXT),
            (&order.quantity, Type::INT8),
            (&price, Type::FLOAT8),
            (&region, Type::TEXT),
        ];
        // One statement is one transaction; the LSN query is pipelined behind it and runs
        // after its commit, so the whole write costs one round trip to the primary.
        let (written, lsn) = tokio::join!(
            client.query_typed(sql, &params),
            client.query_typed("SELECT pg_current_wal_lsn()::text", &[]),
        );
        let rows = match written {
            Ok(rows) => rows,
            Err(e) => {
                // No answer, or the server went away mid-statement (a shutdown may cut the
                // wait for the standby after the local commit): the outcome is unknown.
                let unknown = e
                    .code()
                    .is_none_or(|c| c.code().starts_with("57") || c.code().starts_with("08"));
                session.keep_or_discard(&e);
                return Err(if unknown {
                    StoreError::CommitUnknown(e)
                } else {
                    StoreError::Query {
                        pool: "writer",
                        source: e,
                    }
                });
            }
        };
        let Some(row) = rows.first() else {
            return Err(StoreError::InsufficientShares {
                user: order.user.clone(),
                symbol: order.symbol.clone(),
                quantity: order.quantity,
            });
        };
        // At or past the end of the commit record: a replica that replayed it has the order.
        let lsn = match lsn {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.get::<_, Option<String>>(0))
                .and_then(|l| l.parse().ok())
                .unwrap_or(Lsn(0)),
            Err(e) => {
                // Committed: the order stands; only its position in the WAL is unknown.
                session.keep_or_discard(&e);
                Lsn(0)
            }
        };
        self.writer.note_ok();
        Ok(Placed {
            order: OrderRow {
                id: row.get(0),
                user: order.user.clone(),
                symbol: order.symbol.clone(),
                side: side.to_owned(),
                quantity: order.quantity,
                price,
                region: region.to_owned(),
                created_at: row.get(1),
            },
            position: row.get(2),
            lsn,
        })
    }

    /// The user's holdings from the reader. With `min_lsn` (the user's last write), waits
    /// up to [`REPLAY_WAIT`] for the reader to replay it, else reads from the writer: a
    /// user always sees their own orders. A reader that cannot be reached also sends the
    /// read to the writer.
    pub async fn holdings(&self, user: &str, min_lsn: Option<Lsn>) -> Result<Holdings, StoreError> {
        let started = Instant::now();
        match bounded("reader", self.read_replica(user, min_lsn, started)).await {
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {}
            Err(StoreError::NoSchema) => {}
            Err(e) => tracing::debug!(error = %e, "reading from the writer instead"),
        }
        let mut h = bounded("writer", self.read(&self.writer, user)).await?;
        h.read_from = ReadFrom::Writer;
        h.waited = started.elapsed();
        Ok(h)
    }

    /// Reads from the reader once it has replayed `min_lsn`; None when it has not within
    /// [`REPLAY_WAIT`].
    async fn read_replica(
        &self,
        user: &str,
        min_lsn: Option<Lsn>,
        started: Instant,
    ) -> Result<Option<Holdings>, StoreError> {
        if let Some(wanted) = min_lsn {
            let mut pause = Duration::from_millis(2);
            loop {
                if self.replayed(&self.reader).await? >= wanted {
                    break;
                }
                if started.elapsed() + pause > REPLAY_WAIT {
                    return Ok(None);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(25));
            }
        }
        let mut h = self.read(&self.reader, user).await?;
        h.waited = started.elapsed();
        Ok(Some(h))
    }

    /// How far the server behind `pool` has come: on a standby the WAL it has replayed,
    /// on a primary all of it.
    async fn replayed(&self, pool: &Pool) -> Result<Lsn, StoreError> {
        let mut session = pool.session().await?;
        let rows = session
            .client()
            .query_typed(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                              ELSE pg_current_wal_lsn() END)::text",
                &[],
            )
            .await;
        match rows {
            Ok(rows) => Ok(rows
                .first()
                .and_then(|r| r.get::<_, Option<String>>(0))
                .and_then(|s| s.parse().ok())
                .unwrap_or(Lsn(0))),
            Err(source) => {
                session.keep_or_discard(&source);
                Err(StoreError::Query {
                    pool: pool.name(),
                    source,
                })
            }
        }
    }

    /// Positions and recent orders in one statement (one snapshot, one round trip).
    async fn read(&self, pool: &Pool, user: &str) -> Result<Holdings, StoreError> {
        let mut session = pool.session().await?;
        let row = session
            .client()
            .query_typed(
                HOLDINGS,
                &[(&user, Type::TEXT), (&RECENT_ORDERS, Type::INT8)],
            )
            .await;
        let row = match row {
            Ok(rows) => rows.into_iter().next(),
            Err(source) => {
                let missing =
                    source.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE);
                session.keep_or_discard(&source);
                if missing {
                    return Err(StoreError::NoSchema);
                }
                pool.note_error(&source);
                return Err(StoreError::Query {
                    pool: pool.name(),
                    source,
                });
            }
        };
        pool.note_ok();
        let column = |i: usize| {
            row.as_ref()
                .and_then(|r| r.get::<_, Option<String>>(i))
                .unwrap_or_else(|| "[]".to_owned())
        };
        let positions: Vec<(String, i64)> =
            serde_json::from_str(&column(0)).map_err(|e| StoreError::Shape(e.to_string()))?;
        let orders: Vec<StoredOrder> =
            serde_json::from_str(&column(1)).map_err(|e| StoreError::Shape(e.to_string()))?;
        Ok(Holdings {
            positions,
            orders: orders
                .into_iter()
                .map(|o| OrderRow {
                    id: o.id,
                    user: user.to_owned(),
                    symbol: o.symbol,
                    side: o.side,
                    quantity: o.quantity,
                    price: o.price,
                    region: o.region,
                    created_at: o.created_at,
                })
                .collect(),
            read_from: ReadFrom::Replica,
            waited: Duration::ZERO,
        })
    }

    /// Round trips to the writer and the reader, each bounded by `limit`: for
    /// /health/detailed.
    pub async fn probe(&self, limit: Duration) -> [(&'static str, Result<Duration, String>); 2] {
        let (w, r) = tokio::join!(
            self.ping(&self.writer, limit),
            self.ping(&self.reader, limit)
        );
        [("writer", w), ("reader", r)]
    }

    async fn ping(&self, pool: &Pool, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        match tokio::time::timeout(limit, self.replayed(pool)).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_reads_and_prints_as_postgres_does() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l, Lsn(0x16_B374_D848));
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert!("0/16B3748".parse::<Lsn>().unwrap() < "1/0".parse::<Lsn>().unwrap());
        for bad in [
            "",
            "16",
            "16/",
            "/1",
            "x/1",
            "1/2/3",
            "123456789/0",
            "-1/0",
            "1 /0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_never_print_the_password() {
        let o = DatabaseOptions::new(vec![], vec![], "s3cret".into());
        assert!(!format!("{o:?}").contains("s3cret"));
    }
}
