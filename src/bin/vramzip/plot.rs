//! `vramzip bench --plot OUT.svg`: decode throughput and load-time bars, drawn with plotters.

use plotters::prelude::*;
use std::path::Path;
use vramzip::gpu::bench::GpuBench;
use vramzip::{Error, Result};

/// Where a TrueType font for the labels is looked for (plotters draws no text without one).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn register_font() -> Result<()> {
    let chosen = std::env::var("VRAMZIP_FONT").ok();
    let bytes = chosen.iter().map(String::as_str).chain(FONTS.iter().copied()).find_map(|p| std::fs::read(p).ok()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "--plot needs a TrueType font: set VRAMZIP_FONT, or install one at one of {FONTS:?} (Debian: apt-get install fonts-dejavu-core)"
        ))
    })?;
    // plotters keeps the font for the life of the process
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| Error::InvalidArgument("--plot: the font could not be read".into()))
}

fn bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    bars: &[(String, f64, RGBColor)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.2;
    // horizontal bars: the category names read left of them
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..top, (0..bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit)
        .y_labels(bars.len())
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    for (i, (_, v, color)) in bars.iter().enumerate() {
        chart.draw_series(
            Histogram::horizontal(&chart)
                .style(color.filled())
                .margin(6)
                .data([(i, *v)]),
        )?;
        chart.draw_series(std::iter::once(Text::new(
            format!(" {v:.3}"),
            (*v, SegmentValue::CenterOf(i)),
            ("sans-serif", 12),
        )))?;
    }
    Ok(())
}

/// Draws the GPU figures of one `vramzip bench` run (one set per backend) and the CPU decode
/// throughput into an SVG file.
pub fn plot(path: &Path, title: &str, cpu_decode_gbps: f64, gpus: &[GpuBench]) -> Result<()> {
    register_font()?;
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1200, 60 + 34 * (1 + 3 * gpus.len() as u32).max(4)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(600);
        let mut speed = vec![(
            "CPU decode".to_string(),
            cpu_decode_gbps,
            RGBColor(120, 120, 120),
        )];
        let mut load = Vec::new();
        for g in gpus {
            let backend = &g.backend;
            speed.push((
                format!("{backend} decode"),
                g.decode_gbps(),
                RGBColor(31, 119, 180),
            ));
            speed.push((
                format!("{backend} buffer copy"),
                g.copy_gbps(),
                RGBColor(255, 127, 14),
            ));
            speed.push((
                format!("{backend} shader copy"),
                g.shader_copy_gbps(),
                RGBColor(214, 39, 40),
            ));
            load.push((
                format!("{backend} raw file"),
                g.load_raw_s * 1e3,
                RGBColor(255, 127, 14),
            ));
            load.push((
                format!("{backend} GPU decode"),
                g.load_compressed_s * 1e3,
                RGBColor(31, 119, 180),
            ));
            load.push((
                format!("{backend} CPU decode"),
                g.load_cpu_decoded_s * 1e3,
                RGBColor(120, 120, 120),
            ));
        }
        bars(&left, "Decoded (or copied) GB/s", "GB/s", &speed)?;
        bars(&right, "Load to VRAM, ms (lower is better)", "ms", &load)?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| Error::InvalidArgument(format!("--plot {}: {e}", path.display())))
}
