//! The report's charts, drawn with plotters into an RGB buffer (DejaVu Sans embedded, so no
//! system fonts are needed) and saved as PNG.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::prelude::*;

use crate::error::{Error, Result};

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (800, 480);

/// Colours of series, in order (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid font; registration cannot fail on it.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("plot", e.to_string())
}

/// Draws with `f` on a white canvas and saves the PNG at `path`.
fn render(path: &Path, size: (u32, u32), f: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> std::result::Result<(), Box<dyn std::error::Error>>) -> Result<()> {
    fonts();
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        f(&root).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf).expect("buffer matches the size");
    crate::viz::save_png(&img, path)
}

/// A named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Line chart of several series.
pub fn lines(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 14)).draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).collect();
            let drawn = chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            drawn.label(s.name.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            if pts.len() <= 60 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 14)).draw()?;
        }
        Ok(())
    })
}

/// Bar chart of named values in [0, 1] (shown as percentages).
pub fn bars(path: &Path, title: &str, y_label: &str, names: &[String], values: &[f64]) -> Result<()> {
    let n = names.len().max(1);
    let lo = values.iter().copied().filter(|v| v.is_finite()).fold(1.0f64, f64::min);
    let y0 = ((lo * 100.0 - 10.0).max(0.0) / 10.0).floor() * 10.0;
    render(path, (SIZE.0, SIZE.1 + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, y0..100.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, (name, &v)) in names.iter().zip(values).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new([(x + 0.15, y0), (x + 0.85, v * 100.0)], color.filled())))?;
            let (px, py) = chart.backend_coord(&(x + 0.5, v * 100.0));
            let style = ("sans-serif", 14).into_font().into_text_style(root).pos(Pos::new(HPos::Center, VPos::Bottom));
            root.draw(&Text::new(format!("{:.1}", v * 100.0), (px, py - 3), style))?;
            let (px, py) = chart.backend_coord(&(x + 0.5, y0));
            let style = ("sans-serif", 14).into_font().into_text_style(root).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(name.clone(), (px, py + 8), style))?;
        }
        Ok(())
    })
}

/// Confusion matrix heat map with counts; rows are true classes.
pub fn confusion(path: &Path, title: &str, names: &[String], counts: &[Vec<u64>]) -> Result<()> {
    let k = names.len();
    render(path, (760, 700), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..k as f64, k as f64..0f64)?;
        chart.configure_mesh().disable_mesh().x_labels(0).y_labels(0).x_desc("predicted class").label_style(("sans-serif", 14)).draw()?;
        // Class names left of the rows, class numbers below the columns.
        for (i, name) in names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, i as f64 + 0.5));
            root.draw(&Text::new(format!("{i} {name}"), (x - 105, y - 7), ("sans-serif", 13)))?;
            let (x, y) = chart.backend_coord(&(i as f64 + 0.45, k as f64));
            root.draw(&Text::new(i.to_string(), (x, y + 5), ("sans-serif", 13)))?;
        }
        for (t, row) in counts.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (p, &c) in row.iter().enumerate() {
                let f = c as f64 / total;
                let shade = (255.0 * (1.0 - f)) as u8;
                let cell = [(p as f64, t as f64), (p as f64 + 1.0, t as f64 + 1.0)];
                chart.draw_series(std::iter::once(Rectangle::new(cell, RGBColor(shade, shade, 255).filled())))?;
                let color = if f > 0.5 { WHITE } else { BLACK };
                let style = ("sans-serif", 12).into_font().color(&color);
                chart.draw_series(std::iter::once(Text::new(c.to_string(), (p as f64 + 0.2, t as f64 + 0.4), style)))?;
            }
        }
        Ok(())
    })
}

/// Scatter plot of 2-D points coloured by class, with a legend of class names.
pub fn scatter(path: &Path, title: &str, points: &[(f64, f64)], classes: &[u32], names: &[String]) -> Result<()> {
    let (x0, x1) = range(points.iter().map(|p| p.0));
    let (y0, y1) = range(points.iter().map(|p| p.1));
    render(path, (800, 640), |root| {
        let mut chart = ChartBuilder::on(root).caption(title, ("sans-serif", 22)).margin(15).build_cartesian_2d(x0..x1, y0..y1)?;
        for (c, name) in names.iter().enumerate() {
            let color = PALETTE[c % PALETTE.len()];
            let pts = points.iter().zip(classes).filter(|(_, &y)| y as usize == c).map(|(&p, _)| Circle::new(p, 3, color.filled()));
            chart.draw_series(pts)?.label(name.clone()).legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 13)).draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_png() {
        let d = tempfile::tempdir().unwrap();
        let s = Series { name: "loss".into(), points: (0..50).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect() };
        lines(&d.path().join("l.png"), "Loss", "step", "loss", &[s]).unwrap();
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        bars(&d.path().join("b.png"), "Accuracy", "top-1 (%)", &names, &[0.9, 0.5, 0.7]).unwrap();
        confusion(&d.path().join("c.png"), "Confusion", &names, &[vec![5, 1, 0], vec![0, 3, 3], vec![1, 0, 9]]).unwrap();
        let pts: Vec<(f64, f64)> = (0..90).map(|i| ((i % 9) as f64, (i / 9) as f64)).collect();
        let cls: Vec<u32> = (0..90).map(|i| i % 3).collect();
        scatter(&d.path().join("s.png"), "Map", &pts, &cls, &names).unwrap();
        for f in ["l.png", "b.png", "c.png", "s.png"] {
            let img = image::open(d.path().join(f)).unwrap().to_rgb8();
            // Something other than white was drawn: text and marks.
            assert!(img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000, "{f}");
        }
    }
}
