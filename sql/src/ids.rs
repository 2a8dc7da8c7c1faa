//! Trace and span ids the way people write them: as hex strings.
//!
//! Ids are stored as `FixedSizeBinary(16)` / `FixedSizeBinary(8)`. The analyzer rule here
//! rewrites a comparison of such a column with a string literal (`trace_id =
//! '5B8EFFF798038103D269B633813FC60C'`, `<>`, `IN (...)`) into a comparison with the decoded
//! binary value, before type coercion would compare bytes with text. The comparison stays a
//! plain binary equality, so it reaches the Parquet reader as a pushed-down predicate. A
//! string that is not an id of the column's width is an error, not an empty result.
//!
//! On the way out, [`ids_as_hex`] turns id columns into lowercase hex strings for display.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; it must run before type coercion.
#[derive(Debug, Default)]
pub struct HexIds;

/// Decodes `s` as an id of `width` bytes.
pub fn parse_hex_id(s: &str, width: usize) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() != width * 2 {
        return None;
    }
    (0..width)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn id_width(e: &Expr, schema: &DFSchema) -> Option<i32> {
    if !matches!(e, Expr::Column(_)) {
        return None;
    }
    match e.get_type(schema).ok()? {
        DataType::FixedSizeBinary(w) if w == 16 || w == 8 => Some(w),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s),
        _ => None,
    }
}

fn id_literal(s: &str, width: i32, column: &Expr) -> Result<Expr> {
    match parse_hex_id(s, width as usize) {
        Some(bytes) => Ok(Expr::Literal(
            ScalarValue::FixedSizeBinary(width, Some(bytes)),
            None,
        )),
        None => plan_err!(
            "'{s}' is not a {}-digit hex id, as {column} needs",
            width * 2
        ),
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Eq | Operator::NotEq) =>
        {
            if let (Some(w), Some(s)) = (id_width(&left, schema), string_literal(&right)) {
                let lit = id_literal(s, w, &left)?;
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    left,
                    op,
                    Box::new(lit),
                ))));
            }
            if let (Some(s), Some(w)) = (string_literal(&left), id_width(&right, schema)) {
                let lit = id_literal(s, w, &right)?;
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(lit),
                    op,
                    right,
                ))));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right,
            })))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            if let Some(w) = id_width(&expr, schema)
                && list.iter().all(|e| string_literal(e).is_some())
            {
                let list = list
                    .iter()
                    .map(|e| id_literal(string_literal(e).expect("checked"), w, &expr))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(Transformed::yes(Expr::InList(InList {
                    expr,
                    list,
                    negated,
                })));
            }
            Ok(Transformed::no(Expr::InList(InList {
                expr,
                list,
                negated,
            })))
        }
        other => Ok(Transformed::no(other)),
    }
}

impl AnalyzerRule for HexIds {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // Expressions of a node refer to the columns of its inputs.
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            if node.inputs().is_empty() {
                schema = node.schema().as_ref().clone();
            }
            node.map_expressions(|e| e.transform_up(|e| rewrite(e, &schema)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "scrydb_hex_ids"
    }
}

/// `batch` with every top-level `FixedSizeBinary` column (trace and span ids) replaced by its
/// lowercase hex string, for display in tables, CSV and JSON.
pub fn ids_as_hex(batch: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if let DataType::FixedSizeBinary(_) = f.data_type() {
            let ids = c.as_fixed_size_binary();
            let mut b = StringBuilder::with_capacity(ids.len(), ids.len() * 32);
            for i in 0..ids.len() {
                if ids.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(hex(ids.value(i)));
                }
            }
            fields.push(Arc::new(Field::new(
                f.name(),
                DataType::Utf8,
                f.is_nullable(),
            )));
            columns.push(Arc::new(b.finish()));
        } else {
            fields.push(f.clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("same rows, one string column per id column")
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_in_either_case() {
        assert_eq!(
            parse_hex_id("EEE19b7ec3c1b174", 8),
            Some(vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74])
        );
        assert_eq!(parse_hex_id("eee19b7ec3c1b17", 8), None);
        assert_eq!(parse_hex_id("zze19b7ec3c1b174", 8), None);
        assert_eq!(parse_hex_id("é1e19b7ec3c1b17", 8), None);
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }
}
