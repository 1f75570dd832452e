//! Server-to-client tokens. DONE / DONEPROC / DONEINPROC come from `tds-protocol`; the rest
//! (LOGINACK, ENVCHANGE, ERROR, INFO, COLMETADATA, ROW, NBCROW, RETURNSTATUS) it only decodes,
//! so they are written here.

use bytes::{BufMut, BytesMut};
use tds_protocol::{Done, DoneInProc, DoneProc, DoneStatus};

use crate::types::{SqlType, write_b_varchar, write_us_varchar};

pub(crate) const SERVER_NAME: &str = "caudal-tds-server";

/// A response being assembled.
#[derive(Default)]
pub(crate) struct Tokens {
    pub buf: BytesMut,
}

/// One result column as COLMETADATA describes it.
#[derive(Debug, Clone)]
pub(crate) struct ResultColumn {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    pub identity: bool,
    /// The table the column belongs to (text/ntext carry it).
    pub table: String,
}

pub(crate) fn status(more: bool, error: bool, count: bool, in_xact: bool) -> DoneStatus {
    let bit = |b: bool, v: u16| if b { v } else { 0 };
    DoneStatus::from_bits(
        bit(more, 0x01) | bit(error, 0x02) | bit(in_xact, 0x04) | bit(count, 0x10),
    )
}

impl Tokens {
    pub fn login_ack(&mut self, tds_version: u32) {
        let mut body = BytesMut::new();
        body.put_u8(1);
        body.put_u32(tds_version);
        write_b_varchar(&mut body, "Microsoft SQL Server");
        body.put_slice(&[16, 0, 0x0F, 0xA0]);
        self.buf.put_u8(0xAD);
        self.buf.put_u16_le(body.len() as u16);
        self.buf.put_slice(&body);
    }

    fn env_change(&mut self, ty: u8, new: &[u8], old: &[u8]) {
        self.buf.put_u8(0xE3);
        self.buf.put_u16_le((1 + new.len() + old.len()) as u16);
        self.buf.put_u8(ty);
        self.buf.put_slice(new);
        self.buf.put_slice(old);
    }

    pub fn env_string(&mut self, ty: u8, new: &str, old: &str) {
        let mut n = BytesMut::new();
        write_b_varchar(&mut n, new);
        let mut o = BytesMut::new();
        write_b_varchar(&mut o, old);
        self.env_change(ty, &n, &o);
    }

    pub fn env_collation(&mut self) {
        let mut n = vec![5u8];
        n.extend_from_slice(&crate::types::LATIN1_CI_AS);
        self.env_change(7, &n, &[0]);
    }

    /// BEGIN (8), COMMIT (9) or ROLLBACK (10) of the transaction with this descriptor.
    pub fn env_transaction(&mut self, ty: u8, descriptor: u64) {
        let mut d = vec![8u8];
        d.extend_from_slice(&descriptor.to_le_bytes());
        if ty == 8 {
            self.env_change(ty, &d, &[0]);
        } else {
            self.env_change(ty, &[0], &d);
        }
    }

    fn message(&mut self, token: u8, number: u32, class: u8, message: &str) {
        let mut body = BytesMut::new();
        body.put_u32_le(number);
        body.put_u8(1);
        body.put_u8(class);
        write_us_varchar(&mut body, message);
        write_b_varchar(&mut body, SERVER_NAME);
        write_b_varchar(&mut body, "");
        body.put_u32_le(1);
        self.buf.put_u8(token);
        self.buf.put_u16_le(body.len() as u16);
        self.buf.put_slice(&body);
    }

    pub fn error(&mut self, number: u32, message: &str) {
        let class = if number == 4060 || number == 18456 {
            14
        } else {
            16
        };
        self.message(0xAA, number, class, message);
    }

    pub fn col_metadata(&mut self, columns: &[ResultColumn]) {
        self.buf.put_u8(0x81);
        self.buf.put_u16_le(columns.len() as u16);
        for c in columns {
            self.buf.put_u32_le(0);
            let mut flags: u16 = 0;
            if c.nullable {
                flags |= 0x0001;
            }
            if c.identity {
                flags |= 0x0010;
            } else {
                flags |= 0x0004;
            }
            self.buf.put_u16_le(flags);
            c.ty.write_type_info(&mut self.buf, &c.table);
            write_b_varchar(&mut self.buf, &c.name);
        }
    }

    pub fn return_status(&mut self, status: i32) {
        self.buf.put_u8(0x79);
        self.buf.put_i32_le(status);
    }

    pub fn done(&mut self, status: DoneStatus, cur_cmd: u16, rows: u64) {
        Done {
            status,
            cur_cmd,
            row_count: rows,
        }
        .encode(&mut self.buf);
    }

    pub fn done_in_proc(&mut self, status: DoneStatus, cur_cmd: u16, rows: u64) {
        DoneInProc {
            status,
            cur_cmd,
            row_count: rows,
        }
        .encode(&mut self.buf);
    }

    pub fn done_proc(&mut self, status: DoneStatus, cur_cmd: u16, rows: u64) {
        DoneProc {
            status,
            cur_cmd,
            row_count: rows,
        }
        .encode(&mut self.buf);
    }
}
