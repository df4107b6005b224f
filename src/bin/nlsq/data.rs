//! Reading columns from CSV, TSV and whitespace-separated files.
//!
//! The file is read whole; only the selected columns are parsed, so other columns may hold
//! text. Blank lines and lines starting with `#` are skipped. Every error names the file and
//! the 1-based line (and column) it is about.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Tab,
    Semicolon,
    Whitespace,
}

/// A data file: its header (if any) and the byte ranges of its data lines.
pub struct Table {
    pub name: String,
    pub header: Option<Vec<String>>,
    pub delimiter: Delimiter,
    text: String,
    /// (1-based line number, byte range) of each data line.
    rows: Vec<(usize, std::ops::Range<usize>)>,
    /// Fields of the first data line (or of the header).
    pub n_columns: usize,
}

/// A resolved column: 0-based index and a label for messages and plots.
#[derive(Clone, Debug)]
pub struct Column {
    pub index: usize,
    /// The header name, or `column N` without a header.
    pub label: String,
    /// True when the file has a header (the label is a name).
    pub named: bool,
}

impl Column {
    /// `column 2 'y'`, or `column 2` without a header.
    pub fn describe(&self) -> String {
        if self.named {
            format!("column {} '{}'", self.index + 1, self.label)
        } else {
            format!("column {}", self.index + 1)
        }
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(s)
}

fn split(line: &str, d: Delimiter) -> Vec<&str> {
    match d {
        Delimiter::Comma => line.split(',').map(unquote).collect(),
        Delimiter::Tab => line.split('\t').map(unquote).collect(),
        Delimiter::Semicolon => line.split(';').map(unquote).collect(),
        Delimiter::Whitespace => line.split_whitespace().map(unquote).collect(),
    }
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

impl Table {
    /// Reads `path` (`-` is standard input). `header`: `Some` forces, `None` detects.
    pub fn read(path: &Path, header: Option<bool>) -> Result<Table> {
        let name = path.display().to_string();
        let mut text = String::new();
        if name == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
        } else {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read data file {name}"))?;
            text = String::from_utf8(bytes).map_err(|e| {
                anyhow!(
                    "data file {name} is not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                )
            })?;
        }
        if let Some(rest) = text.strip_prefix('\u{feff}') {
            text = rest.to_string();
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let end = start + line.len();
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                let content_end = start + line.trim_end_matches(['\n', '\r']).len();
                lines.push((i + 1, start..content_end));
            }
            start = end;
        }
        let Some((_, first)) = lines.first().cloned() else {
            bail!("data file {name} has no data lines")
        };
        let first_line = &text[first];
        let delimiter = match ext.as_deref() {
            Some("csv") if !first_line.contains(',') && first_line.contains(';') => Delimiter::Semicolon,
            Some("csv") => Delimiter::Comma,
            Some("tsv" | "tab") => Delimiter::Tab,
            _ if first_line.contains(',') => Delimiter::Comma,
            _ if first_line.contains('\t') => Delimiter::Tab,
            _ if first_line.contains(';') => Delimiter::Semicolon,
            _ => Delimiter::Whitespace,
        };
        let fields = split(first_line, delimiter);
        // A header names the columns: the first line is one when some field of it is not a
        // number while the same field of the next line is (so a first row with a text column,
        // as in long format, stays data). A single line is a header when not all numbers.
        let has_header = header.unwrap_or_else(|| match lines.get(1) {
            Some((_, second)) => {
                let next = split(&text[second.clone()], delimiter);
                fields.iter().zip(&next).any(|(a, b)| !is_number(a) && is_number(b))
            }
            None => !fields.iter().all(|f| is_number(f)),
        });
        let n_columns = fields.len();
        let header = has_header.then(|| fields.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(h) = &header {
            for (j, c) in h.iter().enumerate() {
                if let Some(k) = h[..j].iter().position(|d| d == c) {
                    bail!(
                        "{name}: the header names two columns '{c}' (columns {} and {}); give them distinct names",
                        k + 1,
                        j + 1
                    );
                }
            }
        }
        let rows = if has_header { lines[1..].to_vec() } else { lines };
        if rows.is_empty() {
            bail!("data file {name} has a header line but no data lines");
        }
        // Every line has the same number of fields: a line with more (a decimal comma, `0,05`)
        // or fewer would otherwise be read as other numbers without a word.
        for (line_no, range) in &rows {
            let k = split(&text[range.clone()], delimiter).len();
            if k != n_columns {
                let first = if has_header { "the header" } else { "the first line" };
                let hint = if delimiter == Delimiter::Comma && k > n_columns {
                    " (a decimal comma? write decimals with '.', or separate fields with ';' or tabs)"
                } else {
                    ""
                };
                bail!("{name}:{line_no}: has {k} fields but {first} has {n_columns}{hint}");
            }
        }
        Ok(Table {
            name,
            header,
            delimiter,
            text,
            rows,
            n_columns,
        })
    }

    fn columns_list(&self) -> String {
        match &self.header {
            Some(h) => h.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "),
            None => format!("1..{} (no header line)", self.n_columns),
        }
    }

    /// Resolves a column written as a header name or a 1-based index.
    pub fn column(&self, spec: &str, what: &str) -> Result<Column> {
        if let Some(h) = &self.header {
            if let Some(i) = h.iter().position(|c| c == spec) {
                return Ok(Column {
                    index: i,
                    label: spec.to_string(),
                    named: true,
                });
            }
        }
        if let Ok(i) = spec.parse::<usize>() {
            if i == 0 || i > self.n_columns {
                bail!(
                    "{what} column {i} is out of range: {} has {} columns (indices start at 1)",
                    self.name,
                    self.n_columns
                );
            }
            let label = match &self.header {
                Some(h) => h[i - 1].clone(),
                None => format!("column {i}"),
            };
            return Ok(Column {
                index: i - 1,
                label,
                named: self.header.is_some(),
            });
        }
        match &self.header {
            Some(_) => bail!(
                "{what} column '{spec}' not found in {} (columns: {})",
                self.name,
                self.columns_list()
            ),
            None => bail!(
                "{what} column '{spec}': {} has no header line, so give a 1-based index (1..{}), or --header",
                self.name,
                self.n_columns
            ),
        }
    }

    /// The fields of one column as text (for a group column).
    pub fn strings(&self, col: &Column, what: &str) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (line_no, range) in &self.rows {
            let fields = split(&self.text[range.clone()], self.delimiter);
            let Some(field) = fields.get(col.index) else {
                bail!(
                    "{}:{line_no}: has {} fields, but {what} is column {} ('{}')",
                    self.name,
                    fields.len(),
                    col.index + 1,
                    col.label
                );
            };
            out.push(unquote(field).to_string());
        }
        Ok(out)
    }

    /// The values of one column, all finite; the first that is not is the error.
    pub fn values(&self, col: &Column, what: &str) -> Result<Vec<f64>> {
        self.values_each(col, what)
            .into_iter()
            .map(|v| v.map_err(|e| anyhow!(e)))
            .collect()
    }

    /// The values of one column, each a finite number or the message saying why it is not
    /// (naming the file, line and column).
    pub fn values_each(&self, col: &Column, what: &str) -> Vec<std::result::Result<f64, String>> {
        self.rows
            .iter()
            .map(|(line_no, range)| {
                let fields = split(&self.text[range.clone()], self.delimiter);
                let Some(field) = fields.get(col.index) else {
                    return Err(format!(
                        "{}:{line_no}: has {} fields, but {what} is column {} ('{}')",
                        self.name,
                        fields.len(),
                        col.index + 1,
                        col.label
                    ));
                };
                match field.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(v),
                    Ok(_) => Err(format!(
                        "{}:{line_no}: {what} (column {}) is {field}: data must be finite numbers",
                        self.name,
                        col.index + 1
                    )),
                    Err(_) if field.is_empty() => Err(format!(
                        "{}:{line_no}: {what} (column {}) is empty",
                        self.name,
                        col.index + 1
                    )),
                    Err(_) => {
                        let hint = if *line_no == self.rows[0].0 && self.header.is_none() {
                            " (use --header if the first line names the columns)"
                        } else {
                            ""
                        };
                        Err(format!(
                            "{}:{line_no}: {what} (column {}) is '{field}', not a number{hint}",
                            self.name,
                            col.index + 1
                        ))
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, text: &str, header: Option<bool>) -> Result<Table> {
        let dir = std::env::temp_dir().join(format!("nlsq-cli-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        Table::read(&p, header)
    }

    #[test]
    fn header_is_detected_and_columns_resolve() {
        let t = table("a.csv", "# comment\nt, \"y\",s\n1,2,0.1\n\n2,4,0.1\n", None).unwrap();
        assert_eq!(
            t.header.as_deref(),
            Some(&["t".to_string(), "y".into(), "s".into()][..])
        );
        let y = t.column("y", "--y").unwrap();
        assert_eq!(t.values(&y, "y").unwrap(), vec![2.0, 4.0]);
        assert_eq!(t.column("3", "--sigma").unwrap().label, "s");
        assert!(t.column("q", "--y").unwrap_err().to_string().contains("'t', 'y', 's'"));
        let t = table("b.txt", "1 2\n3 4\n", None).unwrap();
        assert!(t.header.is_none() && t.delimiter == Delimiter::Whitespace);
        assert!(t.column("4", "--y").is_err());
    }

    #[test]
    fn bad_values_name_the_line() {
        let t = table("c.tsv", "x\ty\n1\t2\n2\tnan\n", None).unwrap();
        let y = t.column("y", "y").unwrap();
        let e = t.values(&y, "y").unwrap_err().to_string();
        assert!(e.contains("c.tsv:3") && e.contains("finite"), "{e}");
        let e = table("d.csv", "x,y\n1,2\n2\n", None).err().unwrap().to_string();
        assert!(e.contains("d.csv:3: has 1 fields but the header has 2"), "{e}");
    }

    #[test]
    fn a_decimal_comma_is_refused_not_misread() {
        let e = table("e.csv", "x,y\n0,05,2,836\n0,10,2,5\n", None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("e.csv:2: has 4 fields but the header has 2") && e.contains("decimal comma"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_header_names_are_refused() {
        let e = table("f.csv", "x,x,y\n1,2,3\n", None).err().unwrap().to_string();
        assert!(e.contains("two columns 'x' (columns 1 and 2)"), "{e}");
    }

    #[test]
    fn a_headerless_first_row_with_text_stays_data() {
        let t = table("g.csv", "A,0.1,2.5\nA,0.2,2.4\nB,0.1,3.0\n", None).unwrap();
        assert!(t.header.is_none());
        assert_eq!(
            t.values(&t.column("2", "x").unwrap(), "x").unwrap(),
            vec![0.1, 0.2, 0.1]
        );
        let t = table("h.csv", "t,y,group\n0.1,2,A\n", None).unwrap();
        assert_eq!(t.header.as_ref().map(|h| h.len()), Some(3));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn read_bytes(bytes: &[u8], name: &str) -> Result<Table> {
            let dir = std::env::temp_dir().join(format!("nlsq-cli-data-props-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            Table::read(&p, None)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Any bytes: a table or an error, never a panic; every column of a table reads.
            #[test]
            fn random_bytes_give_a_table_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(t) = read_bytes(&bytes, "r.csv") {
                    for j in 0..t.n_columns {
                        let c = t.column(&(j + 1).to_string(), "col").unwrap();
                        let _ = t.values(&c, "col");
                        let _ = t.strings(&c, "col");
                    }
                }
            }

            /// Random CSV shapes of numbers (header or not, CRLF or LF, spaces, a BOM) read back
            /// as the numbers written.
            #[test]
            fn generated_tables_read_back_exactly(
                cols in 1usize..5,
                rows in prop::collection::vec(prop::collection::vec(-1e6f64..1e6, 5), 1..30),
                header in any::<bool>(),
                crlf in any::<bool>(),
                bom in any::<bool>(),
                pad in any::<bool>(),
            ) {
                let nl = if crlf { "\r\n" } else { "\n" };
                let sep = if pad { " , " } else { "," };
                let mut text = String::from(if bom { "\u{feff}" } else { "" });
                if header {
                    text += &(0..cols).map(|j| format!("c{j}")).collect::<Vec<_>>().join(sep);
                    text += nl;
                }
                for r in &rows {
                    text += &r[..cols].iter().map(|v| v.to_string()).collect::<Vec<_>>().join(sep);
                    text += nl;
                }
                let t = read_bytes(text.as_bytes(), "g.csv").unwrap();
                prop_assert_eq!(t.header.is_some(), header);
                for j in 0..cols {
                    let c = t.column(&(j + 1).to_string(), "col").unwrap();
                    let got = t.values(&c, "col").unwrap();
                    let want: Vec<f64> = rows.iter().map(|r| r[j]).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
