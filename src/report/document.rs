//! A report as a list of blocks, rendered to Markdown (images beside it) and to one
//! self-contained HTML file (images embedded as base64 PNG).

use std::path::Path;

use base64::Engine;

use crate::error::{Context, Result};

/// One piece of a report.
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    /// Header row, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// Caption and file name (inside the report folder).
    Image(String, String),
}

/// The image files a report's Markdown (from [`markdown`]) links: plain file names, none with
/// a path.
pub fn linked_images(md: &str) -> Vec<String> {
    md.lines()
        .filter_map(|l| l.strip_prefix("![")?.split_once("](")?.1.strip_suffix(')'))
        .filter(|f| !f.is_empty() && !f.contains(['/', '\\']) && f != &"." && f != &"..")
        .map(str::to_string)
        .collect()
}

/// Markdown, with images linked by file name.
pub fn markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => s += &format!("{} {text}\n\n", "#".repeat(*level as usize)),
            Block::Paragraph(text) => s += &format!("{text}\n\n"),
            Block::Table(head, rows) => {
                s += &format!("| {} |\n", head.join(" | "));
                s += &format!("|{}\n", head.iter().map(|_| "---|").collect::<String>());
                for r in rows {
                    s += &format!("| {} |\n", r.join(" | "));
                }
                s += "\n";
            }
            Block::Image(caption, file) => s += &format!("![{caption}]({file})\n\n"),
        }
    }
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Inline Markdown of our paragraphs (`**bold**`, `` `code` ``) as HTML.
fn inline(t: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(t).split("**").enumerate() {
        let part: String = part.split('`').enumerate().map(|(j, p)| if j % 2 == 1 { format!("<code>{p}</code>") } else { p.to_string() }).collect();
        out += &if i % 2 == 1 { format!("<strong>{part}</strong>") } else { part };
    }
    out
}

/// One HTML file; images read from `dir` and embedded.
pub fn html(title: &str, blocks: &[Block], dir: &Path) -> Result<String> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
th{{background:#f0f0f0}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}\
code{{background:#f4f4f4;padding:1px 4px}}</style></head><body>\n",
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, text) => s += &format!("<h{level}>{}</h{level}>\n", escape(text)),
            Block::Paragraph(text) => s += &format!("<p>{}</p>\n", inline(text)),
            Block::Table(head, rows) => {
                s += "<table><tr>";
                head.iter().for_each(|h| s += &format!("<th>{}</th>", inline(h)));
                s += "</tr>\n";
                for r in rows {
                    s += "<tr>";
                    r.iter().for_each(|c| s += &format!("<td>{}</td>", inline(c)));
                    s += "</tr>\n";
                }
                s += "</table>\n";
            }
            Block::Image(caption, file) => {
                let path = dir.join(file);
                let bytes = std::fs::read(&path).at(&path)?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                s += &format!("<figure><img alt=\"{0}\" src=\"data:image/png;base64,{b64}\"><figcaption>{0}</figcaption></figure>\n", escape(caption));
            }
        }
    }
    s += "</body></html>\n";
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let d = tempfile::tempdir().unwrap();
        image::RgbImage::new(2, 2).save(d.path().join("a.png")).unwrap();
        let blocks = vec![
            Block::Heading(1, "Run <x>".into()),
            Block::Paragraph("**bold** and `code`".into()),
            Block::Table(vec!["a".into(), "b".into()], vec![vec!["1".into(), "2".into()]]),
            Block::Image("plot".into(), "a.png".into()),
        ];
        let md = markdown(&blocks);
        assert!(md.contains("# Run <x>") && md.contains("| a | b |\n|---|---|\n| 1 | 2 |") && md.contains("![plot](a.png)"));
        let h = html("t", &blocks, d.path()).unwrap();
        assert!(h.contains("Run &lt;x&gt;") && h.contains("<strong>bold</strong>") && h.contains("<code>code</code>"));
        assert!(h.contains("data:image/png;base64,iVBOR"), "the PNG is embedded");
        assert!(html("t", &[Block::Image("x".into(), "missing.png".into())], d.path()).is_err());
        assert_eq!(linked_images(&md), vec!["a.png"]);
        assert!(linked_images("![x](../a.png)\n![y](/etc/b.png)\ntext ![z](c.png)\n").is_empty(), "paths and inline links are not a report's plots");
    }
}
