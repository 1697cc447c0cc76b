//! Requests a logged-in client sends, one file per wire unit: the
//! ALL_HEADERS prefix [MS-TDS 2.2.5.3] (`all_headers`), SQLBatch [2.2.6.7]
//! (`batch`), the head of an RPCRequest [2.2.6.6] (`rpc`) and a
//! TransactionManagerRequest [2.2.6.9] (`transaction_manager`).
//!
//! From TDS 7.2 on, SQLBatch, RPCRequest and TransactionManagerRequest always
//! start with ALL_HEADERS (only in the first packet of the message), so every
//! decoder here expects it; a TDS 7.1 session has none.

mod all_headers;
mod batch;
mod rpc;
mod transaction_manager;

pub use all_headers::{encode_all_headers, header_type, split_all_headers, AllHeaders};
pub use batch::sql_batch_text;
pub use rpc::{
    all_headers_bytes, batch_procedures, call_arguments, encode_sp_prepare, encode_sp_unprepare,
    execute_as_executesql, param_status, proc_id, rpc_option, with_prepared_handle, ProcRef,
    RpcArgument, RpcHead,
};
pub use transaction_manager::{
    isolation_level, tm_request_type, BeginXact, TmRequest, TransactionManagerRequest,
};

#[cfg(test)]
mod tests {
    use super::batch::tests::spec_4_6;
    use super::rpc::tests::{handle, ntext, nvarchar, nvarchar_max, rpc, sp_execute_7, spec_4_8};
    use super::transaction_manager::tests::tm;
    use super::*;
    use crate::testing::XorShift;

    /// ALL_HEADERS with one transaction descriptor header and one
    /// outstanding request.
    pub(super) fn all_headers(transaction_descriptor: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&22u32.to_le_bytes());
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&header_type::TRANSACTION_DESCRIPTOR.to_le_bytes());
        v.extend_from_slice(&transaction_descriptor.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v
    }

    fn seeds() -> Vec<Vec<u8>> {
        vec![
            spec_4_6()[8..].to_vec(),
            spec_4_8()[8..].to_vec(),
            rpc(
                &ProcRef::Id(proc_id::SP_PREPEXEC),
                &[
                    handle(None),
                    nvarchar("", Some("@a int")),
                    nvarchar_max("SELECT 1", &[3], true),
                ],
            ),
            rpc(&ProcRef::Name("sp_executesql".into()), &[ntext("SELECT 2")]),
            sp_execute_7(),
            tm(8, &[2, b'x', 0, 1, 2, 0]),
        ]
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let mut rng = XorShift::new(0x5eed_0003);
        let decode_all = |input: &[u8]| {
            let _ = split_all_headers(input);
            let _ = sql_batch_text(input);
            let _ = RpcHead::decode(input);
            let _ = RpcHead::decode_body(input);
            let _ = TransactionManagerRequest::decode(input);
        };
        for _ in 0..10_000 {
            let mut bytes = all_headers(rng.next());
            if rng.below(4) == 0 {
                bytes.clear();
            }
            bytes.extend(rng.bytes(96));
            decode_all(&bytes);
        }
        for seed in seeds() {
            for input in rng.mutations(&seed, 10_000) {
                decode_all(&input);
            }
        }
    }
}
