//! y = W x on weights decoded on the GPU: the same bits as on the uncompressed weights, and close
//! to a CPU reference.

mod common;

use common::*;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions};
use wgpu::util::DeviceExt;

fn gpu() -> GpuContext {
    GpuContext::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("these tests need a GPU adapter (lavapipe will do): {e}"))
}

fn upload(gpu: &GpuContext, bytes: &[u8]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
}

fn read_f32(gpu: &GpuContext, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    gpu.read_back(b, 4 * n as u64)
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn weight(bytes: &[u8], is_f32: bool, i: usize) -> f64 {
    if is_f32 {
        f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as f64
    } else {
        f32::from_bits((u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32) << 16) as f64
    }
}

/// Every 2-D weight of `src`: decode + GEMV equals GEMV on the uncompressed weight bit for bit,
/// and a CPU f64 reference within float rounding.
fn check_file(src: &std::path::Path, name: &str) -> usize {
    let gpu = gpu();
    let dir = tmpdir(name);
    let vz = dir.join("w.vz");
    format::compress_file(src, &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let archive = Archive::open(&vz).unwrap();
    let mut checked = 0;
    for t in archive
        .tensors
        .iter()
        .filter(|t| t.meta.shape.len() == 2 && matches!(t.meta.dtype.as_str(), "BF16" | "F32"))
    {
        let layer = gpu.linear(&archive, &t.meta.name).unwrap();
        let (rows, cols) = (layer.rows as usize, layer.cols as usize);
        let is_f32 = t.meta.dtype == "F32";
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0)
            .collect();
        let xb = upload(&gpu, bytemuck::cast_slice(&x));
        let (y_dec, y_raw) = (
            gpu.output_buffer(4 * rows as u64).unwrap(),
            gpu.output_buffer(4 * rows as u64).unwrap(),
        );
        let scratch = gpu.scratch_for(&[&layer]).unwrap();
        let original = archive.decode(t).unwrap();
        let w_raw = upload(&gpu, &original);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_linear(&mut encoder, &layer, &scratch, &xb, &y_dec)
            .unwrap();
        gpu.record_gemv(
            &mut encoder,
            &w_raw,
            0,
            is_f32,
            layer.rows,
            layer.cols,
            &xb,
            &y_raw,
        )
        .unwrap();
        gpu.queue.submit([encoder.finish()]);
        let (a, b) = (read_f32(&gpu, &y_dec, rows), read_f32(&gpu, &y_raw, rows));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{}: decoded and uncompressed weights give different bits",
            t.meta.name
        );
        for (r, got) in a.iter().enumerate() {
            let (mut want, mut scale) = (0f64, 0f64);
            for (c, xc) in x.iter().enumerate() {
                let p = weight(&original, is_f32, r * cols + c) * *xc as f64;
                want += p;
                scale += p.abs();
            }
            assert!(
                (*got as f64 - want).abs() <= 1e-5 * scale + 1e-30,
                "{} row {r}: {got} vs {want}",
                t.meta.name
            );
        }
        checked += 1;
    }
    checked
}

#[test]
fn gemv_on_decoded_real_bf16_weights() {
    assert_eq!(
        check_file(&sample(), "linear-bf16"),
        6,
        "the sample's six dense matrices"
    );
}

#[test]
fn gemv_on_decoded_f32_weights() {
    let dir = tmpdir("linear-f32-src");
    let src = dir.join("w.safetensors");
    let w: Vec<u8> = weightlike(96 * 130, 3)
        .chunks(2)
        .flat_map(|c| ((u16::from_le_bytes([c[0], c[1]]) as u32) << 16 | 0x5a5a).to_le_bytes())
        .collect();
    write_safetensors(&src, &[("w", "F32", vec![96, 130], w)], None);
    assert_eq!(check_file(&src, "linear-f32"), 1);
}

#[test]
fn linear_layers_refuse_what_they_cannot_multiply() {
    let gpu = gpu();
    let dir = tmpdir("linear-bad");
    let src = dir.join("w.safetensors");
    write_safetensors(
        &src,
        &[
            ("odd", "BF16", vec![4, 3], weightlike(12, 1)),
            ("flat", "BF16", vec![12], weightlike(12, 2)),
        ],
        None,
    );
    let vz = dir.join("w.vz");
    format::compress_file(&src, &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let archive = Archive::open(&vz).unwrap();
    assert!(gpu.linear(&archive, "odd").is_err());
    assert!(gpu.linear(&archive, "flat").is_err());
    assert!(gpu.linear(&archive, "missing").is_err());
}
