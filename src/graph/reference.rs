//! f64 CPU interpreter of a graph, built from each op's reference: the oracle for executor
//! tests. Weights and inputs are given as f32 (f16 tensors: the f16-rounded values); an f16
//! activation is rounded to f16 as it is stored, as on the GPU.

use super::{Graph, Op, Role};
use crate::error::{Error, Result};
use crate::ops::{elementwise, embedding, matmul, norm, sampling, softmax};
use crate::tensor::DType;
use std::collections::HashMap;

/// Evaluates every node; returns all tensor values (f64; u32 ids as their value). `host`
/// holds every weight, state and input by name.
pub fn evaluate(g: &Graph, host: &HashMap<String, Vec<f32>>) -> Result<Vec<Vec<f64>>> {
    let mut vals: Vec<Vec<f64>> = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        vals.push(match t.role {
            Role::Activation => Vec::new(),
            _ => host
                .get(&t.name)
                .ok_or_else(|| Error::Invalid(format!("no host data for {}", t.name)))?
                .iter()
                .map(|&v| v as f64)
                .collect(),
        });
    }
    let f32s = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
    for node in &g.nodes {
        let ins: Vec<&Vec<f64>> = node.inputs.iter().map(|t| &vals[t.0]).collect();
        let in_shape = |i: usize| &g.tensors[node.inputs[i].0].shape;
        let out = match &node.op {
            Op::Linear => {
                let (n, k) = (in_shape(1)[0], in_shape(1)[1]);
                let m = ins[0].len() / k.max(1);
                let b = ins.get(2).map(|b| f32s(b));
                matmul::linear_ref(&f32s(ins[0]), &f32s(ins[1]), b.as_deref(), m, n, k)
            }
            Op::LinearAdd => {
                let (n, k) = (in_shape(1)[0], in_shape(1)[1]);
                let m = ins[0].len() / k.max(1);
                let b = ins.get(3).map(|b| f32s(b));
                let y = matmul::linear_ref(&f32s(ins[0]), &f32s(ins[1]), b.as_deref(), m, n, k);
                y.iter().zip(ins[2].iter()).map(|(a, r)| a + r).collect()
            }
            Op::Norm { kind, eps } => {
                let c = *in_shape(0).last().expect("norm input has a last dim");
                let b = ins.get(2).map(|b| f32s(b));
                norm::norm_ref(*kind, &f32s(ins[0]), c, &f32s(ins[1]), b.as_deref(), *eps as f64)
            }
            Op::Unary { op, scale } => {
                ins[0].iter().map(|&x| op.reference(x as f32 as f64, *scale as f64)).collect()
            }
            Op::Binary { op } => {
                let nb = ins[1].len();
                ins[0].iter().enumerate().map(|(i, &a)| op.reference(a, ins[1][i % nb])).collect()
            }
            Op::Cast { to } => elementwise::cast_ref(ins[0], *to),
            Op::Embedding => {
                let ids: Vec<u32> = ins[0].iter().map(|&v| v as u32).collect();
                embedding::embedding_ref(&ids, &f32s(ins[1]), in_shape(1)[1])
            }
            Op::Softmax { scale } => {
                let n = *in_shape(0).last().expect("softmax input has a last dim");
                f32s(ins[0]).chunks(n).flat_map(|r| softmax::softmax_ref(r, *scale as f64)).collect()
            }
            Op::Argmax => {
                let n = *in_shape(0).last().expect("argmax input has a last dim");
                f32s(ins[0]).chunks(n).map(|r| softmax::argmax_ref(r) as f64).collect()
            }
            Op::Sample { params } => {
                let n = *in_shape(0).last().expect("sample input has a last dim");
                f32s(ins[0])
                    .chunks(n)
                    .enumerate()
                    .map(|(r, row)| sampling::sample_ref(row, params, 0, r as u32) as f64)
                    .collect()
            }
            Op::Node(n) => {
                let shapes: Vec<&[usize]> =
                    node.inputs.iter().map(|t| g.tensors[t.0].shape.as_slice()).collect();
                let ins: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
                match n.0.reference(&ins, &shapes) {
                    Some(r) => r?,
                    None => {
                        return Err(Error::UnsupportedVariant(format!("{} has no reference", n.0.name())))
                    }
                }
            }
            Op::Custom(_) => {
                return Err(Error::UnsupportedVariant(format!(
                    "{} (a recording closure) has no reference",
                    node.op.name()
                )))
            }
        };
        vals[node.output.0] = match g.tensors[node.output.0].dtype {
            DType::F16 => elementwise::cast_ref(&out, DType::F16),
            _ => out,
        };
    }
    Ok(vals)
}
