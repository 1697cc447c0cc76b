//! LOGIN7 [MS-TDS 2.2.6.4]: the client's login record (packet type 0x10).
//!
//! A fixed part (lengths, versions, flags) is followed by an OffsetLength table
//! of (USHORT offset from the start of the record, USHORT length) pairs, then
//! the data. String lengths count UTF-16 code units; the SSPI and extension
//! lengths count bytes. With fExtension set, the ibExtension slot points to a
//! DWORD holding the offset of the FeatureExt block.

use super::error::DecodeError;
use super::read::{utf16_to_string, Reader};

const CONTEXT: &str = "LOGIN7";

/// TDSVersion values a client may send [MS-TDS 2.2.6.4].
pub mod tds_version {
    pub const V7_0: u32 = 0x7000_0000;
    pub const V7_1: u32 = 0x7100_0000;
    pub const V7_1_REV1: u32 = 0x7100_0001;
    pub const V7_2: u32 = 0x7209_0002;
    pub const V7_3A: u32 = 0x730A_0003;
    pub const V7_3B: u32 = 0x730B_0003;
    pub const V7_4: u32 = 0x7400_0004;
    /// TDS 8.0 (TLS before PRELOGIN); numerically below 7.x.
    pub const V8_0: u32 = 0x0800_0000;
}

/// OptionFlags1 bits [MS-TDS 2.2.6.4].
pub mod option_flags1 {
    /// Big-endian numbers (otherwise little-endian).
    pub const F_BYTE_ORDER: u8 = 0x01;
    /// EBCDIC (otherwise ASCII).
    pub const F_CHAR: u8 = 0x02;
    /// fFloat: two bits, 0 = IEEE 754.
    pub const F_FLOAT_MASK: u8 = 0x0C;
    /// Dump/load and BCP are off.
    pub const F_DUMP_LOAD: u8 = 0x10;
    /// Send ENVCHANGE on USE (database change).
    pub const F_USE_DB: u8 = 0x20;
    /// Failing to switch to the initial database fails the login.
    pub const F_DATABASE: u8 = 0x40;
    /// Send ENVCHANGE on SET LANGUAGE.
    pub const F_SET_LANG: u8 = 0x80;
}

/// OptionFlags2 bits [MS-TDS 2.2.6.4].
pub mod option_flags2 {
    /// Failing to set the initial language fails the login.
    pub const F_LANGUAGE: u8 = 0x01;
    /// The client is an ODBC driver: the server sets ANSI session defaults.
    pub const F_ODBC: u8 = 0x02;
    /// fUserType: three bits (0 normal, 1 server, 2 remote user, 3 replication).
    pub const F_USER_TYPE_MASK: u8 = 0x70;
    /// Integrated (SSPI) security.
    pub const F_INT_SECURITY: u8 = 0x80;
}

/// TypeFlags bits [MS-TDS 2.2.6.4].
pub mod type_flags {
    /// fSQLType: four bits, 0 = default, 1 = T-SQL.
    pub const F_SQL_TYPE_MASK: u8 = 0x0F;
    pub const F_OLEDB: u8 = 0x10;
    /// ApplicationIntent=ReadOnly (TDS 7.4; older servers ignore it).
    pub const F_READ_ONLY_INTENT: u8 = 0x20;
}

/// OptionFlags3 bits [MS-TDS 2.2.6.4].
pub mod option_flags3 {
    pub const F_CHANGE_PASSWORD: u8 = 0x01;
    pub const F_SEND_YUKON_BINARY_XML: u8 = 0x02;
    pub const F_USER_INSTANCE: u8 = 0x04;
    pub const F_UNKNOWN_COLLATION_HANDLING: u8 = 0x08;
    /// ibExtension points to the offset of a FeatureExt block.
    pub const F_EXTENSION: u8 = 0x10;
}

/// FeatureId values of FeatureExt [MS-TDS 2.2.6.4].
pub mod feature_id {
    pub const SESSION_RECOVERY: u8 = 0x01;
    pub const FED_AUTH: u8 = 0x02;
    pub const COLUMN_ENCRYPTION: u8 = 0x04;
    pub const GLOBAL_TRANSACTIONS: u8 = 0x05;
    pub const AZURE_SQL_SUPPORT: u8 = 0x08;
    pub const DATA_CLASSIFICATION: u8 = 0x09;
    pub const UTF8_SUPPORT: u8 = 0x0A;
    pub const AZURE_SQL_DNS_CACHING: u8 = 0x0B;
    pub const TERMINATOR: u8 = 0xFF;
}

/// Fixed part plus OffsetLength table before TDS 7.2 (no ibChangePassword,
/// no cbSSPILong) and from 7.2 on.
const FIXED_LEN_7_1: usize = 86;
const FIXED_LEN_7_2: usize = 94;
/// Longest LOGIN7 record [MS-TDS 2.2.6.4]: 128K - 1 bytes.
pub const MAX_LEN: usize = 128 * 1024 - 1;

/// Longest value of each string field, in UTF-16 code units [MS-TDS 2.2.6.4].
const MAX_NAME_CHARS: usize = 128;
const MAX_ATTACH_DB_FILE_CHARS: usize = 260;

/// One FeatureExt entry: `FeatureId FeatureDataLen FeatureData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureExt {
    pub id: u8,
    pub data: Vec<u8>,
}

/// A LOGIN7 record. `password` and `change_password` are plain text here:
/// decode removes the wire obfuscation and encode applies it. `Debug` does not
/// print them.
#[derive(Clone, PartialEq, Eq)]
pub struct Login7 {
    pub tds_version: u32,
    pub packet_size: u32,
    pub client_prog_ver: u32,
    pub client_pid: u32,
    pub connection_id: u32,
    pub option_flags1: u8,
    pub option_flags2: u8,
    pub type_flags: u8,
    pub option_flags3: u8,
    pub client_time_zone: i32,
    pub client_lcid: u32,
    pub hostname: String,
    pub username: String,
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    /// ibCltIntName: the client interface library ("ODBC", "Core .Net SqlClient Data Provider").
    pub library_name: String,
    pub language: String,
    pub database: String,
    /// Usually the client's MAC address.
    pub client_id: [u8; 6],
    pub sspi: Vec<u8>,
    pub attach_db_file: String,
    pub change_password: String,
    pub feature_ext: Vec<FeatureExt>,
}

impl Default for Login7 {
    /// What a proxy sends to log in to a backend: TDS 7.4, 4096-byte packets,
    /// and the flags Microsoft.Data.SqlClient and the spec example (4.2) use:
    /// fUseDB | fDatabase | fSetLang, fLanguage | fODBC. tiberius sends the
    /// same without fSetLang; we want the language ENVCHANGE too. fUnknown-
    /// CollationHandling as tiberius (servers ignore it from 7.3 clients on).
    fn default() -> Self {
        Login7 {
            tds_version: tds_version::V7_4,
            packet_size: 4096,
            client_prog_ver: 0,
            client_pid: std::process::id(),
            connection_id: 0,
            option_flags1: option_flags1::F_USE_DB
                | option_flags1::F_DATABASE
                | option_flags1::F_SET_LANG,
            option_flags2: option_flags2::F_LANGUAGE | option_flags2::F_ODBC,
            type_flags: 0,
            option_flags3: option_flags3::F_UNKNOWN_COLLATION_HANDLING,
            client_time_zone: 0,
            client_lcid: 0,
            hostname: String::new(),
            username: String::new(),
            password: String::new(),
            app_name: "sluice".into(),
            server_name: String::new(),
            library_name: "sluice".into(),
            language: String::new(),
            database: String::new(),
            client_id: [0; 6],
            sspi: Vec::new(),
            attach_db_file: String::new(),
            change_password: String::new(),
            feature_ext: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Login7 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("0x{:08X}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("option_flags", &[self.option_flags1, self.option_flags2])
            .field("type_flags", &self.type_flags)
            .field("option_flags3", &self.option_flags3)
            .field("hostname", &self.hostname)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("app_name", &self.app_name)
            .field("server_name", &self.server_name)
            .field("library_name", &self.library_name)
            .field("database", &self.database)
            .field("sspi_len", &self.sspi.len())
            .field("feature_ext", &self.feature_ext)
            .finish_non_exhaustive()
    }
}

impl Login7 {
    /// A SQL-authentication login with [`Default`] settings.
    pub fn new_client(username: &str, password: &str, database: &str) -> Self {
        Login7 {
            username: username.into(),
            password: password.into(),
            database: database.into(),
            ..Login7::default()
        }
    }

    /// TypeFlags fReadOnlyIntent: the client asked for ApplicationIntent=ReadOnly.
    pub fn read_only_intent(&self) -> bool {
        self.type_flags & type_flags::F_READ_ONLY_INTENT != 0
    }

    pub fn set_read_only_intent(&mut self, on: bool) {
        if on {
            self.type_flags |= type_flags::F_READ_ONLY_INTENT;
        } else {
            self.type_flags &= !type_flags::F_READ_ONLY_INTENT;
        }
    }

    /// OptionFlags3 fExtension: the record carries a FeatureExt block.
    pub fn wants_feature_ext(&self) -> bool {
        self.option_flags3 & option_flags3::F_EXTENSION != 0
    }

    /// Decodes a LOGIN7 payload (without the packet header). Every offset and
    /// length is checked against the record; TDS versions before 7.1 are
    /// rejected.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload, CONTEXT);
        let length = r.u32_le()? as usize;
        if length != payload.len() || length > MAX_LEN {
            return Err(DecodeError::invalid(
                CONTEXT,
                format!(
                    "Length field {length} does not match the {}-byte message (limit {MAX_LEN})",
                    payload.len()
                ),
            ));
        }
        let mut login = Login7 {
            tds_version: check_version(r.u32_le()?)?,
            ..Login7::default()
        };
        login.decode_fixed(&mut r)?;
        let table = OffsetTable::decode(&mut r, login.tds_version)?;
        login.decode_data(payload, &table)?;
        Ok(login)
    }

    /// Appends the record. Strings longer than the spec allows (128 UTF-16
    /// code units, 260 for the attach-DB file) are cut at that length, which
    /// keeps every offset within a USHORT. SSPI data comes last so that a long
    /// token (cbSSPILong) cannot push other offsets past 65,535. Before TDS
    /// 7.2 there is no change-password slot, so `change_password` is dropped.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let header_len = fixed_len(self.tds_version);
        let layout = Layout::new(self, header_len);
        self.encode_fixed(out, layout.option_flags3);
        layout.encode_table(out, &self.client_id, header_len);
        layout.encode_data(out, start);
        let length = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    }

    fn decode_fixed(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        self.packet_size = r.u32_le()?;
        self.client_prog_ver = r.u32_le()?;
        self.client_pid = r.u32_le()?;
        self.connection_id = r.u32_le()?;
        self.option_flags1 = r.u8()?;
        self.option_flags2 = r.u8()?;
        self.type_flags = r.u8()?;
        self.option_flags3 = r.u8()?;
        self.client_time_zone = r.u32_le()? as i32;
        self.client_lcid = r.u32_le()?;
        Ok(())
    }

    fn decode_data(&mut self, msg: &[u8], t: &OffsetTable) -> Result<(), DecodeError> {
        self.hostname = string_at(msg, t.hostname, "HostName")?;
        self.username = string_at(msg, t.username, "UserName")?;
        self.password = password_at(msg, t.password, "Password")?;
        self.app_name = string_at(msg, t.app_name, "AppName")?;
        self.server_name = string_at(msg, t.server_name, "ServerName")?;
        self.library_name = string_at(msg, t.library_name, "CltIntName")?;
        self.language = string_at(msg, t.language, "Language")?;
        self.database = string_at(msg, t.database, "Database")?;
        self.client_id = t.client_id;
        self.sspi = bytes_at(msg, t.sspi, "SSPI")?.to_vec();
        self.attach_db_file = string_at(msg, t.attach_db_file, "AtchDBFile")?;
        self.change_password = password_at(msg, t.change_password, "ChangePassword")?;
        let extension = bytes_at(msg, t.extension, "Extension")?;
        if self.wants_feature_ext() {
            self.feature_ext = decode_feature_ext(msg, extension)?;
        }
        Ok(())
    }

    fn encode_fixed(&self, out: &mut Vec<u8>, option_flags3: u8) {
        for value in [
            0, // Length, patched once the record is complete
            self.tds_version,
            self.packet_size,
            self.client_prog_ver,
            self.client_pid,
            self.connection_id,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&[
            self.option_flags1,
            self.option_flags2,
            self.type_flags,
            option_flags3,
        ]);
        out.extend_from_slice(&self.client_time_zone.to_le_bytes());
        out.extend_from_slice(&self.client_lcid.to_le_bytes());
    }
}

/// TDS 7.0 and older are refused: SQL Server 2000 (7.1) is the oldest client
/// this codec speaks to. TDS 8.0's value is numerically small, so it is named.
fn check_version(version: u32) -> Result<u32, DecodeError> {
    if version == tds_version::V8_0 || version >= tds_version::V7_1 {
        return Ok(version);
    }
    Err(DecodeError::invalid(
        CONTEXT,
        format!("TDS version 0x{version:08X} is older than 7.1 (0x71000000) and is not supported"),
    ))
}

/// Whether the record has the TDS 7.2 OffsetLength additions.
fn has_7_2_fields(version: u32) -> bool {
    version == tds_version::V8_0 || version >= 0x7200_0000
}

fn fixed_len(version: u32) -> usize {
    if has_7_2_fields(version) {
        FIXED_LEN_7_2
    } else {
        FIXED_LEN_7_1
    }
}

/// An (offset, length in bytes) pair of the OffsetLength table.
type Span = (usize, usize);

/// The OffsetLength table, lengths already converted to bytes.
struct OffsetTable {
    hostname: Span,
    username: Span,
    password: Span,
    app_name: Span,
    server_name: Span,
    extension: Span,
    library_name: Span,
    language: Span,
    database: Span,
    client_id: [u8; 6],
    sspi: Span,
    attach_db_file: Span,
    change_password: Span,
}

impl OffsetTable {
    fn decode(r: &mut Reader<'_>, version: u32) -> Result<Self, DecodeError> {
        let (hostname, username, password) = (chars_of(r)?, chars_of(r)?, chars_of(r)?);
        let (app_name, server_name) = (chars_of(r)?, chars_of(r)?);
        let extension = (r.u16_le()? as usize, r.u16_le()? as usize);
        let (library_name, language, database) = (chars_of(r)?, chars_of(r)?, chars_of(r)?);
        let mut client_id = [0u8; 6];
        client_id.copy_from_slice(r.take(6)?);
        let sspi = (r.u16_le()? as usize, r.u16_le()? as usize);
        let attach_db_file = chars_of(r)?;
        let (change_password, sspi_long) = if has_7_2_fields(version) {
            (chars_of(r)?, r.u32_le()? as usize)
        } else {
            ((0, 0), 0)
        };
        Ok(OffsetTable {
            hostname,
            username,
            password,
            app_name,
            server_name,
            extension,
            library_name,
            language,
            database,
            client_id,
            sspi: sspi_span(sspi, sspi_long),
            attach_db_file,
            change_password,
        })
    }
}

/// An (offset, character count) pair, the count converted to bytes.
fn chars_of(r: &mut Reader<'_>) -> Result<Span, DecodeError> {
    Ok((r.u16_le()? as usize, r.u16_le()? as usize * 2))
}

/// cbSSPI of 0xFFFF defers to cbSSPILong when that is non-zero [MS-TDS 2.2.6.4].
fn sspi_span((offset, short): Span, long: usize) -> Span {
    if short == u16::MAX as usize && long > 0 {
        (offset, long)
    } else {
        (offset, short)
    }
}

fn bytes_at<'a>(msg: &'a [u8], (offset, len): Span, field: &str) -> Result<&'a [u8], DecodeError> {
    offset
        .checked_add(len)
        .and_then(|end| msg.get(offset..end))
        .ok_or_else(|| {
            DecodeError::invalid(
                CONTEXT,
                format!(
                    "{field} at offset {offset} length {len} ends past the {}-byte record",
                    msg.len()
                ),
            )
        })
}

fn string_at(msg: &[u8], span: Span, field: &str) -> Result<String, DecodeError> {
    utf16_to_string(bytes_at(msg, span, field)?, CONTEXT)
}

fn password_at(msg: &[u8], span: Span, field: &str) -> Result<String, DecodeError> {
    let plain: Vec<u8> = bytes_at(msg, span, field)?
        .iter()
        .map(|b| reveal(*b))
        .collect();
    utf16_to_string(&plain, CONTEXT)
}

/// Password obfuscation [MS-TDS 2.2.6.4]: swap the nibbles of each byte, then
/// XOR with 0xA5.
fn obfuscate(b: u8) -> u8 {
    b.rotate_left(4) ^ 0xA5
}

fn reveal(b: u8) -> u8 {
    (b ^ 0xA5).rotate_left(4)
}

/// Follows ibExtension to ibFeatureExtLong, then reads FeatureOpt entries up to
/// the 0xFF terminator, all inside the record.
fn decode_feature_ext(msg: &[u8], extension: &[u8]) -> Result<Vec<FeatureExt>, DecodeError> {
    let dword: [u8; 4] = extension
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            DecodeError::invalid(
                CONTEXT,
                "fExtension is set but cbExtension is shorter than 4",
            )
        })?;
    let offset = u32::from_le_bytes(dword) as usize;
    let block = msg.get(offset..).ok_or_else(|| {
        DecodeError::invalid(
            CONTEXT,
            format!(
                "FeatureExt offset {offset} is past the {}-byte record",
                msg.len()
            ),
        )
    })?;
    let mut r = Reader::new(block, "LOGIN7 FeatureExt");
    let mut features = Vec::new();
    loop {
        let id = r.u8()?;
        if id == feature_id::TERMINATOR {
            return Ok(features);
        }
        let len = r.u32_le()? as usize;
        let data = r.take(len)?.to_vec();
        features.push(FeatureExt { id, data });
    }
}

/// The variable part of an encoded record: each field's bytes and the value
/// of its length slot, in OffsetLength order.
struct Layout {
    fields: Vec<(Vec<u8>, u16)>,
    sspi: Vec<u8>,
    feature_ext: Option<Vec<u8>>,
    option_flags3: u8,
    with_7_2_fields: bool,
}

/// OffsetLength slots in table order; ClientID sits between Database and SSPI.
const EXTENSION_SLOT: usize = 5;
const SSPI_SLOT: usize = 9;

impl Layout {
    fn new(login: &Login7, header_len: usize) -> Self {
        let with_7_2_fields = header_len == FIXED_LEN_7_2;
        let feature_ext = (login.wants_feature_ext() || !login.feature_ext.is_empty())
            .then(|| encode_feature_ext(&login.feature_ext));
        let mut option_flags3 = login.option_flags3 & !option_flags3::F_EXTENSION;
        if feature_ext.is_some() {
            option_flags3 |= option_flags3::F_EXTENSION;
        }
        let name = |s: &str| utf16_field(s, MAX_NAME_CHARS, false);
        let mut fields = vec![
            name(&login.hostname),
            name(&login.username),
            utf16_field(&login.password, MAX_NAME_CHARS, true),
            name(&login.app_name),
            name(&login.server_name),
            // ibExtension: the DWORD ibFeatureExtLong, patched in encode_data.
            (vec![0; if feature_ext.is_some() { 4 } else { 0 }], 0),
            name(&login.library_name),
            name(&login.language),
            name(&login.database),
            (Vec::new(), 0), // SSPI: its data is written last
            utf16_field(&login.attach_db_file, MAX_ATTACH_DB_FILE_CHARS, false),
        ];
        if with_7_2_fields {
            fields.push(utf16_field(&login.change_password, MAX_NAME_CHARS, true));
        }
        fields[EXTENSION_SLOT].1 = fields[EXTENSION_SLOT].0.len() as u16;
        Layout {
            fields,
            sspi: sspi_bytes(&login.sspi, with_7_2_fields),
            feature_ext,
            option_flags3,
            with_7_2_fields,
        }
    }

    fn encode_table(&self, out: &mut Vec<u8>, client_id: &[u8; 6], header_len: usize) {
        let mut offset = header_len;
        let sspi_offset = header_len + self.fields.iter().map(|f| f.0.len()).sum::<usize>();
        for (slot, (bytes, len)) in self.fields.iter().enumerate() {
            if slot == SSPI_SLOT {
                out.extend_from_slice(client_id);
                let short = self.sspi.len().min(u16::MAX as usize) as u16;
                push_pair(out, sspi_offset, short);
                continue;
            }
            push_pair(out, offset, *len);
            offset += bytes.len();
        }
        if self.with_7_2_fields {
            let long = if self.sspi.len() >= u16::MAX as usize {
                self.sspi.len() as u32
            } else {
                0
            };
            out.extend_from_slice(&long.to_le_bytes());
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>, start: usize) {
        let mut extension_at = None;
        for (slot, (bytes, _)) in self.fields.iter().enumerate() {
            if slot == EXTENSION_SLOT && !bytes.is_empty() {
                extension_at = Some(out.len());
            }
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&self.sspi);
        if let (Some(at), Some(block)) = (extension_at, &self.feature_ext) {
            let offset = (out.len() - start) as u32;
            out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(block);
        }
    }
}

fn push_pair(out: &mut Vec<u8>, offset: usize, len: u16) {
    out.extend_from_slice(&(offset as u16).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

/// A string as UTF-16LE, cut after whole characters at `max_units`, with its
/// length slot value (code units). Passwords are obfuscated.
fn utf16_field(s: &str, max_units: usize, password: bool) -> (Vec<u8>, u16) {
    let mut units: Vec<u16> = Vec::new();
    let mut buf = [0u16; 2];
    for c in s.chars() {
        let encoded = c.encode_utf16(&mut buf);
        if units.len() + encoded.len() > max_units {
            break;
        }
        units.extend_from_slice(encoded);
    }
    let mut bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
    if password {
        bytes.iter_mut().for_each(|b| *b = obfuscate(*b));
    }
    (bytes, units.len() as u16)
}

/// Before TDS 7.2 only cbSSPI exists, so at most 65,535 bytes fit.
fn sspi_bytes(sspi: &[u8], with_7_2_fields: bool) -> Vec<u8> {
    let max = if with_7_2_fields {
        u32::MAX as usize
    } else {
        u16::MAX as usize
    };
    sspi[..sspi.len().min(max)].to_vec()
}

fn encode_feature_ext(features: &[FeatureExt]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in features {
        out.push(f.id);
        out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&f.data);
    }
    out.push(feature_id::TERMINATOR);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tds::packet::{PacketHeader, PacketType, MAX_PACKET_SIZE};
    use crate::testing::XorShift;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// MS-TDS 4.2 Login Request, packet header included.
    fn spec_4_2() -> Vec<u8> {
        hex("10 01 00 90 00 00 01 00 88 00 00 00 02 00 09 72
             00 10 00 00 00 00 00 07 00 01 00 00 00 00 00 00
             E0 03 00 00 00 00 00 00 09 04 00 00 5E 00 08 00
             6E 00 02 00 72 00 00 00 72 00 07 00 80 00 00 00
             80 00 00 00 80 00 04 00 88 00 00 00 88 00 00 00
             00 50 8B E2 B7 8F 88 00 00 00 88 00 00 00 88 00
             00 00 00 00 00 00 73 00 6B 00 6F 00 73 00 74 00
             6F 00 76 00 31 00 73 00 61 00 4F 00 53 00 51 00
             4C 00 2D 00 33 00 32 00 4F 00 44 00 42 00 43 00")
    }

    /// MS-TDS 4.20 "FeatureExt with AZURESQLSUPPORT Feature Data": the first
    /// 432 bytes as printed in the spec (header, OffsetLength table and all
    /// strings). The copy we could read stops there, so the 23-byte FeatureExt
    /// block at offset 424 is reconstructed: SESSIONRECOVERY and
    /// GLOBALTRANSACTIONS (empty), AZURESQLSUPPORT and DATACLASSIFICATION
    /// (one byte each), terminator.
    fn spec_4_20() -> Vec<u8> {
        let mut v = hex("10 01 01 C7 00 00 01 00 BF 01 00 00 04 00 00 74
             40 1F 00 00 00 00 00 06 96 1D 00 00 00 00 00 00
             E0 03 20 10 00 00 00 00 00 00 00 00 5E 00 0C 00
             76 00 07 00 84 00 08 00 94 00 1C 00 CC 00 4A 00
             60 01 04 00 64 01 1C 00 9C 01 00 00 9C 01 06 00
             C2 CC 3D 20 B7 AB AB 01 00 00 AB 01 00 00 AB 01
             00 00 00 00 00 00 5A 00 4C 00 49 00 4E 00 36 00
             43 00 4C 00 49 00 45 00 4E 00 54 00 32 00 63 00
             6C 00 6F 00 75 00 64 00 73 00 61 00 00 00 00 00
             00 00 00 00 00 00 00 00 00 00 00 00 2E 00 4E 00
             65 00 74 00 20 00 53 00 71 00 6C 00 43 00 6C 00
             69 00 65 00 6E 00 74 00 20 00 44 00 61 00 74 00
             61 00 20 00 50 00 72 00 6F 00 76 00 69 00 64 00
             65 00 72 00 65 00 32 00 66 00 38 00 38 00 37 00
             36 00 61 00 64 00 36 00 35 00 38 00 2E 00 6C 00
             6F 00 63 00 61 00 6C 00 2E 00 6F 00 6E 00 65 00
             62 00 6F 00 78 00 2E 00 63 00 6F 00 6E 00 74 00
             72 00 6F 00 6C 00 2E 00 7A 00 6C 00 69 00 6E 00
             68 00 65 00 6B 00 61 00 36 00 64 00 65 00 76 00
             34 00 2E 00 6F 00 6E 00 65 00 62 00 6F 00 78 00
             2E 00 78 00 64 00 62 00 2E 00 6D 00 73 00 63 00
             64 00 73 00 2E 00 63 00 6F 00 6D 00 2C 00 33 00
             37 00 30 00 30 00 38 00 A8 01 00 00 2E 00 4E 00
             65 00 74 00 20 00 53 00 71 00 6C 00 43 00 6C 00
             69 00 65 00 6E 00 74 00 20 00 44 00 61 00 74 00
             61 00 20 00 50 00 72 00 6F 00 76 00 69 00 64 00
             65 00 72 00 74 00 65 00 73 00 74 00 64 00 62 00");
        v.extend(hex(
            "01 00 00 00 00  05 00 00 00 00  08 01 00 00 00 01  09 01 00 00 00 01  FF",
        ));
        v
    }

    #[test]
    fn decodes_spec_4_2_login() {
        let packet = spec_4_2();
        let header = PacketHeader::decode(&packet[..8], MAX_PACKET_SIZE).unwrap();
        assert_eq!(header.ty, PacketType::LOGIN7);
        let login = Login7::decode(&packet[8..]).unwrap();
        assert_eq!(login.tds_version, tds_version::V7_2);
        assert_eq!(login.packet_size, 4096);
        assert_eq!(login.client_prog_ver, 0x0700_0000);
        assert_eq!(login.client_pid, 0x100);
        assert_eq!((login.option_flags1, login.option_flags2), (0xE0, 0x03));
        assert_eq!(login.client_lcid, 0x0409);
        assert_eq!(login.hostname, "skostov1");
        assert_eq!(login.username, "sa");
        assert_eq!(login.password, "");
        assert_eq!(login.app_name, "OSQL-32");
        assert_eq!(login.server_name, "");
        assert_eq!(login.library_name, "ODBC");
        assert_eq!(login.database, "");
        assert_eq!(login.client_id, [0x00, 0x50, 0x8B, 0xE2, 0xB7, 0x8F]);
        assert!(!login.read_only_intent());
        assert!(!login.wants_feature_ext());
        assert!(login.feature_ext.is_empty());
    }

    #[test]
    fn re_encodes_spec_4_2_byte_for_byte() {
        let packet = spec_4_2();
        let mut out = Vec::new();
        Login7::decode(&packet[8..]).unwrap().encode(&mut out);
        assert_eq!(out, &packet[8..]);
    }

    #[test]
    fn decodes_spec_4_20_feature_ext_and_read_only_intent() {
        let packet = spec_4_20();
        let header = PacketHeader::decode(&packet[..8], MAX_PACKET_SIZE).unwrap();
        assert_eq!(header.payload_len(), packet.len() - 8);
        let login = Login7::decode(&packet[8..]).unwrap();
        assert_eq!(login.tds_version, tds_version::V7_4);
        assert_eq!(login.packet_size, 8000);
        assert!(login.read_only_intent());
        assert!(login.wants_feature_ext());
        assert_eq!(login.hostname, "ZLIN6CLIENT2");
        assert_eq!(login.username, "cloudsa");
        // The spec blanks the password bytes to 0x00, which reveal as 0x5A.
        assert_eq!(login.password, "\u{5A5A}".repeat(8));
        assert_eq!(login.app_name, ".Net SqlClient Data Provider");
        assert_eq!(
            login.server_name,
            "e2f8876ad658.local.onebox.control.zlinheka6dev4.onebox.xdb.mscds.com,37008"
        );
        assert_eq!(login.library_name, ".Net SqlClient Data Provider");
        assert_eq!(login.database, "testdb");
        let ids: Vec<u8> = login.feature_ext.iter().map(|f| f.id).collect();
        assert_eq!(ids, [1, 5, feature_id::AZURE_SQL_SUPPORT, 9]);
        assert_eq!(login.feature_ext[2].data, [1]);
    }

    #[test]
    fn re_encoded_spec_4_20_decodes_to_the_same_login() {
        let packet = spec_4_20();
        let login = Login7::decode(&packet[8..]).unwrap();
        let mut out = Vec::new();
        login.encode(&mut out);
        assert_eq!(out.len(), packet.len() - 8);
        assert_eq!(Login7::decode(&out).unwrap(), login);
    }

    fn sample() -> Login7 {
        let mut login = Login7::new_client("app_user", "S3cret!€𝄞", "sales");
        login.hostname = "web-01".into();
        login.server_name = "db.example.com".into();
        login.language = "us_english".into();
        login.attach_db_file = r"C:\data\x.mdf".into();
        login.change_password = "n3w".into();
        login.client_time_zone = -120;
        login.sspi = vec![0x4E, 0x54, 0x4C, 0x4D];
        login.feature_ext = vec![
            FeatureExt {
                id: feature_id::UTF8_SUPPORT,
                data: vec![],
            },
            FeatureExt {
                id: feature_id::FED_AUTH,
                data: vec![1, 2, 3],
            },
        ];
        login.set_read_only_intent(true);
        login
    }

    #[test]
    fn round_trips_every_field() {
        let login = sample();
        let mut out = Vec::new();
        login.encode(&mut out);
        let back = Login7::decode(&out).unwrap();
        assert!(back.wants_feature_ext());
        let mut expected = login.clone();
        expected.option_flags3 |= option_flags3::F_EXTENSION;
        assert_eq!(back, expected);
    }

    #[test]
    fn encodes_the_password_obfuscated() {
        let login = Login7::new_client("u", "a", "");
        let mut out = Vec::new();
        login.encode(&mut out);
        let ib = u16::from_le_bytes([out[44], out[45]]) as usize;
        assert_eq!(u16::from_le_bytes([out[46], out[47]]), 1);
        assert_eq!(&out[ib..ib + 2], &[0xB3, 0xA5]); // 'a' = 61 00
    }

    #[test]
    fn feature_ext_offset_points_at_the_block() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(
            out[27] & option_flags3::F_EXTENSION,
            option_flags3::F_EXTENSION
        );
        let ib = u16::from_le_bytes([out[56], out[57]]) as usize;
        assert_eq!(u16::from_le_bytes([out[58], out[59]]), 4);
        let block = u32::from_le_bytes(out[ib..ib + 4].try_into().unwrap()) as usize;
        assert_eq!(out[block], feature_id::UTF8_SUPPORT);
        assert_eq!(*out.last().unwrap(), feature_id::TERMINATOR);
    }

    #[test]
    fn read_only_intent_toggles_one_bit() {
        let mut login = Login7 {
            type_flags: type_flags::F_OLEDB,
            ..Login7::default()
        };
        login.set_read_only_intent(true);
        assert_eq!(
            login.type_flags,
            type_flags::F_OLEDB | type_flags::F_READ_ONLY_INTENT
        );
        login.set_read_only_intent(false);
        assert_eq!(login.type_flags, type_flags::F_OLEDB);
    }

    #[test]
    fn default_matches_a_tds_7_4_odbc_style_client() {
        let login = Login7::default();
        assert_eq!(login.tds_version, 0x7400_0004);
        assert_eq!(login.option_flags1, 0xE0);
        assert_eq!(login.option_flags2, 0x03);
        assert!(!format!("{:?}", Login7::new_client("u", "hunter2", "d")).contains("hunter2"));
    }

    #[test]
    fn long_strings_are_cut_at_the_spec_limit() {
        let mut login = Login7::new_client(&"u".repeat(300), "p", "d");
        login.hostname = "😀".repeat(100); // 200 code units, cut after 64 chars
        let mut out = Vec::new();
        login.encode(&mut out);
        let back = Login7::decode(&out).unwrap();
        assert_eq!(back.username.len(), 128);
        assert_eq!(back.hostname.chars().count(), 64);
    }

    #[test]
    fn large_sspi_uses_cb_sspi_long() {
        let login = Login7 {
            sspi: vec![7; 70_000],
            ..Login7::default()
        };
        let mut out = Vec::new();
        login.encode(&mut out);
        assert_eq!(&out[80..82], &[0xFF, 0xFF]);
        assert_eq!(Login7::decode(&out).unwrap().sspi.len(), 70_000);
    }

    #[test]
    fn tds_7_1_uses_the_short_table() {
        let mut login = sample();
        login.tds_version = tds_version::V7_1_REV1;
        login.feature_ext.clear();
        login.option_flags3 = 0;
        let mut out = Vec::new();
        login.encode(&mut out);
        assert_eq!(u16::from_le_bytes([out[36], out[37]]), 86);
        let back = Login7::decode(&out).unwrap();
        assert_eq!(back.change_password, "");
        assert_eq!(back.database, "sales");
    }

    #[test]
    fn accepts_tds_8_and_rejects_tds_7_0() {
        let mut login = Login7::new_client("u", "p", "d");
        login.tds_version = tds_version::V8_0;
        let mut out = Vec::new();
        login.encode(&mut out);
        assert_eq!(Login7::decode(&out).unwrap().tds_version, tds_version::V8_0);

        login.tds_version = tds_version::V7_0;
        out.clear();
        login.encode(&mut out);
        let err = Login7::decode(&out).unwrap_err();
        assert!(err.to_string().contains("older than 7.1"), "{err}");
    }

    #[test]
    fn rejects_offsets_outside_the_record() {
        let packet = spec_4_2();
        let mut payload = packet[8..].to_vec();
        payload[38] = 0x50; // cchHostName 0x50 characters
        assert!(Login7::decode(&payload).is_err());
        let mut payload = packet[8..].to_vec();
        payload[0] = 0x89; // Length one more than the message
        assert!(Login7::decode(&payload).is_err());
        let mut payload = packet[8..].to_vec();
        payload[27] = option_flags3::F_EXTENSION; // fExtension with cbExtension 0
        assert!(Login7::decode(&payload).is_err());
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let mut rng = XorShift::new(0x5eed_0002);
        for _ in 0..10_000 {
            let mut bytes = rng.bytes(160);
            if bytes.len() >= 8 {
                let len = (bytes.len() as u32).to_le_bytes();
                bytes[..4].copy_from_slice(&len);
                bytes[4..8].copy_from_slice(&tds_version::V7_4.to_le_bytes());
            }
            let _ = Login7::decode(&bytes);
        }
        for seed in [&spec_4_2()[8..], &spec_4_20()[8..]] {
            for mut input in rng.mutations(seed, 10_000) {
                if rng.below(2) == 0 && input.len() >= 4 {
                    let len = (input.len() as u32).to_le_bytes();
                    input[..4].copy_from_slice(&len);
                }
                assert_encode_is_stable(&input);
            }
        }
    }

    /// A record that decodes re-encodes to one that decodes, and encoding that
    /// again changes nothing.
    fn assert_encode_is_stable(input: &[u8]) {
        let Ok(login) = Login7::decode(input) else {
            return;
        };
        let mut once = Vec::new();
        login.encode(&mut once);
        let again = Login7::decode(&once).unwrap();
        let mut twice = Vec::new();
        again.encode(&mut twice);
        assert_eq!(once, twice);
    }
}
