//! Connections: PRELOGIN, LOGIN7, then requests (SQL batch, RPC, bulk load, transaction
//! manager) answered with token streams. DuckDB work runs in `block_in_place` on the server's
//! own multi-threaded runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::Shared;
use crate::engine::{BatchResult, Outcome, Session};
use crate::error::{Error, Result};
use crate::tokens::{Tokens, status};
use crate::types::{Reader, Value, WireType};
use crate::wire::{parse_login7, prelogin_response, read_message, write_message};

pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>) -> Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let Some(first) = read_message(&mut rd).await? else {
        return Ok(());
    };
    if first.kind != 0x12 {
        return Err(Error::Protocol(format!(
            "expected PRELOGIN, got packet type 0x{:02X}",
            first.kind
        )));
    }
    write_message(&mut wr, &prelogin_response(), 4096).await?;
    let Some(login) = read_message(&mut rd).await? else {
        return Ok(());
    };
    if login.kind != 0x10 {
        return Err(Error::Protocol(format!(
            "expected LOGIN7, got packet type 0x{:02X} (this server does not offer TLS; use EncryptionLevel::NotSupported)",
            login.kind
        )));
    }
    let login = parse_login7(&login.body)?;
    let packet_size = match login.packet_size {
        0 => 4096,
        n => n.clamp(512, 32767) as usize,
    };
    let db_name = if login.database.is_empty() {
        shared.default_database()
    } else {
        login.database.clone()
    };
    let mut t = Tokens::default();
    let refused = |t: &mut Tokens, number: u32, message: String| {
        t.error(number, &message);
        t.done(status(false, true, false, false), 0, 0);
    };
    let db = shared.database(&db_name);
    let denied = if login.user != shared.user || login.password != shared.password {
        Some((18456, format!("Login failed for user '{}'.", login.user)))
    } else {
        match &db {
            None => Some((
                4060,
                format!(
                    "Cannot open database \"{db_name}\" requested by the login. The login failed."
                ),
            )),
            Some(d) => {
                let refuse = d
                    .refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                (refuse || d.fail_always.load(Ordering::SeqCst)).then(|| {
                    (4060, format!("Cannot open database \"{db_name}\" requested by the login. The login failed."))
                })
            }
        }
    };
    if let Some((number, message)) = denied {
        tracing::debug!(database = %db_name, number, "login refused");
        refused(&mut t, number, message);
        write_message(&mut wr, &t.buf, packet_size).await?;
        return Ok(());
    }
    let Some(db) = db else { return Ok(()) };
    let mut session =
        tokio::task::block_in_place(|| Session::new(db.clone(), shared.counters.clone()))?;
    shared.counters.logins.fetch_add(1, Ordering::Relaxed);
    t.env_string(1, &db.name, "master");
    t.env_collation();
    t.login_ack(login.tds_version);
    t.env_string(4, &packet_size.to_string(), "4096");
    t.done(status(false, false, false, false), 0, 0);
    write_message(&mut wr, &t.buf, packet_size).await?;

    while let Some(msg) = read_message(&mut rd).await? {
        let started = Instant::now();
        shared
            .counters
            .bytes_received
            .fetch_add(msg.body.len() as u64, Ordering::Relaxed);
        let reply = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle(&mut session, msg.kind, &msg.body)
            }))
            .unwrap_or_else(|_| {
                Err(Error::Protocol(
                    "the server failed on this request (a bug of the test server)".into(),
                ))
            })
        });
        let reply = match reply {
            Ok(r) => r,
            Err(Error::Protocol(p)) => {
                let mut t = Tokens::default();
                t.error(
                    4002,
                    &format!(
                        "The incoming tabular data stream (TDS) protocol stream is incorrect: {p}"
                    ),
                );
                t.done(status(false, true, false, false), 0, 0);
                t.buf.to_vec()
            }
            Err(e) => return Err(e),
        };
        shared
            .counters
            .busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        shared
            .counters
            .bytes_sent
            .fetch_add(reply.len() as u64, Ordering::Relaxed);
        write_message(&mut wr, &reply, packet_size).await?;
    }
    Ok(())
}

fn skip_all_headers(r: &mut Reader<'_>) -> Result<()> {
    let total = r.u32()? as usize;
    if total >= 4 {
        r.take(total - 4)?;
    }
    Ok(())
}

fn handle(session: &mut Session, kind: u8, body: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader::new(body);
    match kind {
        0x01 => {
            skip_all_headers(&mut r)?;
            let text = r.utf16(r.remaining() / 2)?;
            let result = session.run_batch(&text, HashMap::new());
            Ok(batch_reply(session, result))
        }
        0x03 => rpc(session, &mut r),
        0x07 => {
            let result = session.bulk_load(body);
            Ok(batch_reply(session, result))
        }
        0x0E => {
            skip_all_headers(&mut r)?;
            let request = r.u16()?;
            let result = match session.transaction_request(request) {
                Ok(o) => BatchResult {
                    outcomes: vec![o],
                    error: None,
                },
                Err(Error::Sql { number, message }) => BatchResult {
                    outcomes: vec![],
                    error: Some((number, message)),
                },
                Err(e) => return Err(e),
            };
            Ok(batch_reply(session, result))
        }
        0x06 => {
            let mut t = Tokens::default();
            let mut s = status(false, false, false, false);
            s.attn = true;
            t.done(s, 0, 0);
            Ok(t.buf.to_vec())
        }
        other => Err(Error::Protocol(format!(
            "unsupported packet type 0x{other:02X}"
        ))),
    }
}

fn rpc(session: &mut Session, r: &mut Reader<'_>) -> Result<Vec<u8>> {
    skip_all_headers(r)?;
    let name_len = r.u16()?;
    let proc = if name_len == 0xFFFF {
        match r.u16()? {
            10 => "sp_executesql".to_string(),
            other => format!("proc id {other}"),
        }
    } else {
        r.utf16(usize::from(name_len))?
    };
    r.u16()?;
    let mut params = Vec::new();
    while r.remaining() > 0 {
        let next = r.buf[r.pos];
        if next == 0x80 || next == 0xFF || next == 0xFE {
            break;
        }
        let name = r.b_varchar()?;
        r.u8()?;
        let wt = WireType::read(r, false)?;
        let value = wt.read_value(r)?;
        params.push((name, value));
    }
    if !proc.eq_ignore_ascii_case("sp_executesql") {
        let mut t = Tokens::default();
        t.error(2812, &format!("Could not find stored procedure '{proc}'."));
        t.done_proc(status(false, true, false, false), 0, 0);
        return Ok(t.buf.to_vec());
    }
    let mut it = params.into_iter();
    let sql = match it.next() {
        Some((_, Value::Text(s))) => s,
        _ => return Err(Error::Protocol("sp_executesql without a statement".into())),
    };
    let _declaration = it.next();
    let values: HashMap<String, Value> = it.collect();
    let result = session.run_batch(&sql, values);
    Ok(rpc_reply(session, result))
}

/// Tokens of one request's outcomes; `in_proc` selects DONEINPROC (RPC) over DONE (batch).
fn outcome_tokens(
    t: &mut Tokens,
    result: &BatchResult,
    in_proc: bool,
    in_xact: bool,
) -> Option<usize> {
    let mut last_done = None;
    let mut done = |t: &mut Tokens, count: bool, rows: u64, cmd: u16| {
        last_done = Some(t.buf.len());
        let s = status(true, false, count, in_xact);
        if in_proc {
            t.done_in_proc(s, cmd, rows);
        } else {
            t.done(s, cmd, rows);
        }
    };
    for o in &result.outcomes {
        match o {
            Outcome::Rows {
                columns,
                rows,
                count,
            } => {
                t.col_metadata(columns);
                t.buf.extend_from_slice(rows);
                done(t, true, *count, 0xC1);
            }
            Outcome::Count(n) => done(t, true, *n, 0xC3),
            Outcome::Done => done(t, false, 0, 0),
            Outcome::Silent => {}
            Outcome::Tran(kind, d) => t.env_transaction(*kind, *d),
        }
    }
    if let Some((number, message)) = &result.error {
        t.error(*number, message);
        last_done = Some(t.buf.len());
        let s = status(true, true, false, in_xact);
        if in_proc {
            t.done_in_proc(s, 0, 0);
        } else {
            t.done(s, 0, 0);
        }
    }
    last_done
}

fn batch_reply(session: &Session, result: BatchResult) -> Vec<u8> {
    let mut t = Tokens::default();
    let last = outcome_tokens(&mut t, &result, false, session.in_transaction());
    match last {
        // The last DONE closes the response: clear its MORE bit.
        Some(pos) if pos + 1 + 12 == t.buf.len() => t.buf[pos + 1] &= !0x01,
        _ => t.done(
            status(
                false,
                result.error.is_some(),
                false,
                session.in_transaction(),
            ),
            0,
            0,
        ),
    }
    t.buf.to_vec()
}

fn rpc_reply(session: &Session, result: BatchResult) -> Vec<u8> {
    let mut t = Tokens::default();
    outcome_tokens(&mut t, &result, true, session.in_transaction());
    t.return_status(if result.error.is_some() { -6 } else { 0 });
    t.done_proc(
        status(
            false,
            result.error.is_some(),
            false,
            session.in_transaction(),
        ),
        0,
        0,
    );
    t.buf.to_vec()
}
