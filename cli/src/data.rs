//! Reading columns from CSV, TSV and whitespace-separated files.
//!
//! Delimited files are read with the `csv` crate (quoted fields, CRLF, a BOM, trimmed fields),
//! whitespace-separated ones line by line; either way the file is streamed into one flat store
//! of its fields, allocated with `try_reserve` (a file too large for memory is an error, not an
//! abort). Only the selected columns are parsed, so other columns may hold text. Blank lines and
//! lines starting with `#` are skipped. Every line must have the same number of fields. Every
//! error names the file and the 1-based line (and column) it is about.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// How the fields of a line are separated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delimiter {
    Comma,
    Tab,
    Semicolon,
    Whitespace,
}

/// A data file: its header (if any) and its data fields, `n_columns` per row.
pub struct Table {
    pub name: String,
    pub header: Option<Vec<String>>,
    /// Every data field's bytes, one after the other.
    bytes: Vec<u8>,
    /// The end of each field in `bytes` (row-major, `n_columns` per row).
    ends: Vec<usize>,
    /// The 1-based line of each data row.
    lines: Vec<usize>,
    /// Fields per line (of the header, or of the first line).
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

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// One line's fields as text (for header detection and the header itself).
fn texts(fields: &[Vec<u8>]) -> Vec<String> {
    fields.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
}

/// Grows `v` for `extra` more elements or says the file does not fit in memory (`rows` read).
fn reserve<T>(v: &mut Vec<T>, extra: usize, name: &str, rows: usize) -> Result<()> {
    v.try_reserve(extra)
        .map_err(|_| anyhow!("data file {name} does not fit in this process's memory ({rows} lines read)"))
}

impl Table {
    /// Reads `path` (`-` is standard input). `header`: `Some` forces, `None` detects.
    pub fn read(path: &Path, header: Option<bool>) -> Result<Table> {
        let name = path.display().to_string();
        let source: Box<dyn Read> = if name == "-" {
            Box::new(std::io::stdin())
        } else {
            // Only regular files (and links to them): a named pipe or a device would block or
            // never end.
            let meta = std::fs::metadata(path).with_context(|| format!("cannot read data file {name}"))?;
            if !meta.is_file() {
                bail!("data file {name} is not a regular file");
            }
            Box::new(std::fs::File::open(path).with_context(|| format!("cannot read data file {name}"))?)
        };
        let mut input = std::io::BufReader::with_capacity(1 << 16, source);
        // A UTF-8 byte order mark is not part of the first field.
        let start = input
            .fill_buf()
            .with_context(|| format!("cannot read data file {name}"))?;
        if start.starts_with(b"\xef\xbb\xbf") {
            input.consume(3);
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let first_line = {
            let buf = input
                .fill_buf()
                .with_context(|| format!("cannot read data file {name}"))?;
            let text = String::from_utf8_lossy(buf);
            text.lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .unwrap_or("")
                .to_string()
        };
        let delimiter = match ext.as_deref() {
            Some("csv") if !first_line.contains(',') && first_line.contains(';') => Delimiter::Semicolon,
            Some("csv") => Delimiter::Comma,
            Some("tsv" | "tab") => Delimiter::Tab,
            _ if first_line.contains(',') => Delimiter::Comma,
            _ if first_line.contains('\t') => Delimiter::Tab,
            _ if first_line.contains(';') => Delimiter::Semicolon,
            _ => Delimiter::Whitespace,
        };

        // Every line's fields go into one flat store; the first two lines are also kept apart
        // for header detection.
        let mut t = Table {
            name: name.clone(),
            header: None,
            bytes: Vec::new(),
            ends: Vec::new(),
            lines: Vec::new(),
            n_columns: 0,
        };
        let mut firsts: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut push = |t: &mut Table, line: usize, fields: &mut dyn Iterator<Item = &[u8]>| -> Result<()> {
            let before = t.ends.len();
            let mut kept = Vec::new();
            for f in fields {
                reserve(&mut t.bytes, f.len(), &name, t.lines.len())?;
                reserve(&mut t.ends, 1, &name, t.lines.len())?;
                t.bytes.extend_from_slice(f);
                t.ends.push(t.bytes.len());
                if firsts.len() < 2 {
                    kept.push(f.to_vec());
                }
            }
            let k = t.ends.len() - before;
            if t.lines.is_empty() {
                t.n_columns = k;
            } else if k != t.n_columns {
                let first_is_text = firsts.first().is_some_and(|f| texts(f).iter().any(|x| !is_number(x)));
                let first = if header == Some(true) || (header.is_none() && first_is_text) {
                    "the header"
                } else {
                    "the first line"
                };
                let hint = if delimiter == Delimiter::Comma && k > t.n_columns {
                    " (a decimal comma? write decimals with '.', or separate fields with ';' or tabs)"
                } else {
                    ""
                };
                bail!("{name}:{line}: has {k} fields but {first} has {}{hint}", t.n_columns);
            }
            if firsts.len() < 2 {
                firsts.push(kept);
            }
            let read = t.lines.len();
            reserve(&mut t.lines, 1, &name, read)?;
            t.lines.push(line);
            Ok(())
        };
        match delimiter {
            Delimiter::Whitespace => {
                for (i, line) in input.split(b'\n').enumerate() {
                    let line = line.with_context(|| format!("cannot read data file {name}"))?;
                    let text = line.strip_suffix(b"\r").unwrap_or(&line);
                    let trimmed = text.trim_ascii();
                    if trimmed.is_empty() || trimmed.starts_with(b"#") {
                        continue;
                    }
                    let mut fields = trimmed
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|f| !f.is_empty())
                        .map(|f| f.strip_prefix(b"\"").and_then(|f| f.strip_suffix(b"\"")).unwrap_or(f));
                    push(&mut t, i + 1, &mut fields)?;
                }
            }
            d => {
                let byte = match d {
                    Delimiter::Tab => b'\t',
                    Delimiter::Semicolon => b';',
                    _ => b',',
                };
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(byte)
                    .has_headers(false)
                    .flexible(true)
                    .comment(Some(b'#'))
                    .from_reader(input);
                let mut record = csv::ByteRecord::new();
                loop {
                    match reader.read_byte_record(&mut record) {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(e) => {
                            let at = e.position().map(|p| format!(":{}", p.line())).unwrap_or_default();
                            bail!("{name}{at}: {e}");
                        }
                    }
                    // A line of empty fields only (e.g. `,,`) counts as blank.
                    if record.iter().all(|f| f.is_empty()) && record.len() <= 1 {
                        continue;
                    }
                    let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                    // `a, "b"`: a quote after the delimiter's space is not CSV quoting; such
                    // fields lose their quotes too.
                    let mut fields = record.iter().map(|f| {
                        let f = f.trim_ascii();
                        f.strip_prefix(b"\"").and_then(|f| f.strip_suffix(b"\"")).unwrap_or(f)
                    });
                    push(&mut t, line, &mut fields)?;
                }
            }
        }
        if t.lines.is_empty() {
            bail!("data file {name} has no data lines");
        }
        // A header names the columns: the first line is one when some field of it is not a
        // number while the same field of the next line is (so a first row with a text column,
        // as in long format, stays data). A single line is a header when not all numbers.
        let first = texts(&firsts[0]);
        let has_header = header.unwrap_or_else(|| match firsts.get(1) {
            Some(second) => first
                .iter()
                .zip(texts(second))
                .any(|(a, b)| !is_number(a) && is_number(&b)),
            None => !first.iter().all(|f| is_number(f)),
        });
        if has_header {
            for (j, c) in first.iter().enumerate() {
                if let Some(k) = first[..j].iter().position(|d| d == c) {
                    bail!(
                        "{name}: the header names two columns '{c}' (columns {} and {}); give them distinct names",
                        k + 1,
                        j + 1
                    );
                }
            }
            // Drop the header's fields from the store.
            let skip = t.ends[t.n_columns - 1];
            t.bytes.drain(..skip);
            t.ends.drain(..t.n_columns);
            t.ends.iter_mut().for_each(|e| *e -= skip);
            t.lines.remove(0);
            t.header = Some(first);
            if t.lines.is_empty() {
                bail!("data file {name} has a header line but no data lines");
            }
        }
        Ok(t)
    }

    /// The text of field `col` of data row `row`.
    fn field(&self, row: usize, col: usize) -> std::result::Result<&str, String> {
        let i = row * self.n_columns + col;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        std::str::from_utf8(&self.bytes[start..self.ends[i]]).map_err(|e| {
            format!(
                "{}:{}: column {} is not UTF-8 text (byte {})",
                self.name,
                self.lines[row],
                col + 1,
                e.valid_up_to()
            )
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
    pub fn strings(&self, col: &Column, _what: &str) -> Result<Vec<String>> {
        (0..self.lines.len())
            .map(|r| self.field(r, col.index).map(str::to_string).map_err(|e| anyhow!(e)))
            .collect()
    }

    /// The values of one column, all finite; the first that is not is the error.
    pub fn values(&self, col: &Column, what: &str) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        reserve(&mut out, self.lines.len(), &self.name, self.lines.len())?;
        for r in 0..self.lines.len() {
            out.push(self.value(r, col, what).map_err(|e| anyhow!(e))?);
        }
        Ok(out)
    }

    /// The values of one column, each a finite number or the message saying why it is not
    /// (naming the file, line and column).
    pub fn values_each(&self, col: &Column, what: &str) -> Vec<std::result::Result<f64, String>> {
        (0..self.lines.len()).map(|r| self.value(r, col, what)).collect()
    }

    /// Field `col` of data row `r` as a finite number, or why it is not one.
    fn value(&self, r: usize, col: &Column, what: &str) -> std::result::Result<f64, String> {
        let line_no = self.lines[r];
        let field = self.field(r, col.index)?;
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
                let hint = if r == 0 && self.header.is_none() {
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
        assert!(t.header.is_none() && t.n_columns == 2);
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
    fn quoted_fields_crlf_and_a_bom_are_read_as_written() {
        let t = table(
            "q.csv",
            "\u{feff}group,x,y\r\n\"a, b\",1,2\r\n\"c \"\"d\"\"\",3,4\r\n",
            None,
        )
        .unwrap();
        assert_eq!(
            t.header.as_deref(),
            Some(&["group".to_string(), "x".into(), "y".into()][..])
        );
        let g = t.column("group", "--group").unwrap();
        assert_eq!(
            t.strings(&g, "--group").unwrap(),
            vec!["a, b".to_string(), "c \"d\"".into()]
        );
        assert_eq!(t.values(&t.column("y", "y").unwrap(), "y").unwrap(), vec![2.0, 4.0]);
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
