//! The lexer: splits the source into text and the tokens of each action.
//!
//! It follows Go's `text/template/parse` lexer: trim markers are resolved here (the
//! neighbouring text is trimmed), comments vanish, and spaces inside actions are tokens
//! because they separate arguments (`.a .b` versus `.a.b`).

use crate::Error;
use crate::ast::Pos;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    Ident(String),
    Keyword(Keyword),
    /// `.name`, stored without the dot.
    Field(String),
    /// `$name`, stored with the `$` (`$` alone is the root variable).
    Variable(String),
    Dot,
    /// A string constant, already unquoted.
    Str(String),
    /// A number as written.
    Number(String),
    CharConst(char),
    Bool(bool),
    Nil,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    /// Any other printable ASCII character, e.g. the `,` of `range $i, $e :=`.
    Punct(char),
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Define,
    Template,
    Block,
}

impl Keyword {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Keyword::If => "if",
            Keyword::Else => "else",
            Keyword::End => "end",
            Keyword::Range => "range",
            Keyword::With => "with",
            Keyword::Break => "break",
            Keyword::Continue => "continue",
            Keyword::Define => "define",
            Keyword::Template => "template",
            Keyword::Block => "block",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Space characters as Go's lexer sees them (trim markers trim exactly these).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Tokenizes `src`; the last token is always [`Tok::Eof`].
pub(crate) fn lex(src: &str, left: &str, right: &str) -> Result<Vec<Token>, Error> {
    let mut lexer = Lexer {
        src,
        left,
        right,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    src: &'a str,
    left: &'a str,
    right: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn emit(&mut self, tok: Tok, pos: Pos) {
        self.tokens.push(Token { tok, pos });
    }

    fn run(&mut self) -> Result<(), Error> {
        let mut trim_leading = false;
        loop {
            let start = self.pos;
            let delim = self.rest().find(self.left).map(|i| start + i);
            let text_end = delim.unwrap_or(self.src.len());
            let mut text = &self.src[start..text_end];
            if trim_leading {
                text = text.trim_start_matches(is_space);
            }
            let text_pos = text_end - text.len();
            let Some(delim) = delim else {
                if !text.is_empty() {
                    self.emit(Tok::Text(text.to_owned()), text_pos);
                }
                self.emit(Tok::Eof, self.src.len());
                return Ok(());
            };
            self.pos = delim + self.left.len();
            if has_left_trim_marker(self.rest()) {
                text = text.trim_end_matches(is_space);
                self.pos += 2;
            }
            if !text.is_empty() {
                self.emit(Tok::Text(text.to_owned()), text_pos);
            }
            trim_leading = if self.rest().starts_with("/*") {
                self.lex_comment(delim)?
            } else {
                self.emit(Tok::LeftDelim, delim);
                self.lex_action(delim)?
            };
        }
    }

    /// At the right delimiter (optionally preceded by a trim marker): whether it trims, and
    /// its length.
    fn at_right_delim(&self) -> Option<(bool, usize)> {
        let rest = self.rest();
        let bytes = rest.as_bytes();
        if bytes.len() >= 2
            && is_space(bytes[0] as char)
            && bytes[1] == b'-'
            && rest[2..].starts_with(self.right)
        {
            Some((true, 2 + self.right.len()))
        } else if rest.starts_with(self.right) {
            Some((false, self.right.len()))
        } else {
            None
        }
    }

    /// `{{/* ... */}}`; returns whether the closing delimiter trims.
    fn lex_comment(&mut self, delim: Pos) -> Result<bool, Error> {
        let body = self.pos + 2;
        let Some(end) = self.src[body..].find("*/") else {
            return Err(Error::new(delim, "unclosed comment"));
        };
        self.pos = body + end + 2;
        match self.at_right_delim() {
            Some((trim, len)) => {
                self.pos += len;
                Ok(trim)
            }
            None => Err(Error::new(
                self.pos,
                "comment ends before closing delimiter",
            )),
        }
    }

    /// The inside of an action, up to and including the right delimiter; returns whether
    /// that delimiter trims.
    fn lex_action(&mut self, delim: Pos) -> Result<bool, Error> {
        loop {
            if let Some((trim, len)) = self.at_right_delim() {
                if self.paren_depth > 0 {
                    return Err(Error::new(self.pos, "unclosed left paren"));
                }
                let pos = if trim { self.pos + 2 } else { self.pos };
                self.emit(Tok::RightDelim, pos);
                self.pos += len;
                return Ok(trim);
            }
            let start = self.pos;
            let Some(c) = self.bump() else {
                return Err(Error::new(
                    delim,
                    format!("unclosed action: missing {:?}", self.right),
                ));
            };
            match c {
                c if is_space(c) => self.lex_space(start),
                '=' => self.emit(Tok::Assign, start),
                ':' => {
                    if self.bump() != Some('=') {
                        return Err(Error::new(start, "expected :="));
                    }
                    self.emit(Tok::Declare, start);
                }
                '|' => self.emit(Tok::Pipe, start),
                '"' => self.lex_quote(start)?,
                '`' => self.lex_raw_quote(start)?,
                '\'' => self.lex_char(start)?,
                '$' => self.lex_field_or_variable(start, true)?,
                '.' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => {
                    self.lex_field_or_variable(start, false)?
                }
                '.' | '+' | '-' | '0'..='9' => {
                    self.pos = start;
                    self.lex_number(start)?;
                }
                c if is_alnum(c) => self.lex_identifier(start)?,
                '(' => {
                    self.paren_depth += 1;
                    self.emit(Tok::LeftParen, start);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        return Err(Error::new(start, "unexpected right paren"));
                    }
                    self.paren_depth -= 1;
                    self.emit(Tok::RightParen, start);
                }
                c if c.is_ascii_graphic() => self.emit(Tok::Punct(c), start),
                c => {
                    return Err(Error::new(
                        start,
                        format!("unrecognized character in action: U+{:04X}", c as u32),
                    ));
                }
            }
        }
    }

    /// A run of spaces. The last one may belong to a ` -}}` trim marker, in which case it is
    /// left for the right delimiter.
    fn lex_space(&mut self, start: Pos) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        let before_last = self.pos - 1;
        let rest = &self.src[before_last..];
        if rest.as_bytes().get(1) == Some(&b'-') && rest[2..].starts_with(self.right) {
            self.pos = before_last;
            if before_last == start {
                return;
            }
        }
        self.emit(Tok::Space, start);
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | '=' | ')' | '(') => true,
            Some(_) => self.rest().starts_with(self.right),
        }
    }

    fn bad_character(&self) -> Error {
        let c = self.peek().unwrap_or(' ');
        Error::new(
            self.pos,
            format!("bad character {c:?} (U+{:04X})", c as u32),
        )
    }

    /// `.name`, `.` alone, `$name` or `$` alone (the first character is consumed).
    fn lex_field_or_variable(&mut self, start: Pos, variable: bool) -> Result<(), Error> {
        if self.at_terminator() {
            let tok = if variable {
                Tok::Variable("$".to_owned())
            } else {
                Tok::Dot
            };
            self.emit(tok, start);
            return Ok(());
        }
        while self.peek().is_some_and(is_alnum) {
            self.bump();
        }
        if !self.at_terminator() {
            return Err(self.bad_character());
        }
        let tok = if variable {
            Tok::Variable(self.src[start..self.pos].to_owned())
        } else {
            Tok::Field(self.src[start + 1..self.pos].to_owned())
        };
        self.emit(tok, start);
        Ok(())
    }

    fn lex_identifier(&mut self, start: Pos) -> Result<(), Error> {
        while self.peek().is_some_and(is_alnum) {
            self.bump();
        }
        if !self.at_terminator() {
            return Err(self.bad_character());
        }
        let word = &self.src[start..self.pos];
        let tok = match word {
            "if" => Tok::Keyword(Keyword::If),
            "else" => Tok::Keyword(Keyword::Else),
            "end" => Tok::Keyword(Keyword::End),
            "range" => Tok::Keyword(Keyword::Range),
            "with" => Tok::Keyword(Keyword::With),
            "break" => Tok::Keyword(Keyword::Break),
            "continue" => Tok::Keyword(Keyword::Continue),
            "define" => Tok::Keyword(Keyword::Define),
            "template" => Tok::Keyword(Keyword::Template),
            "block" => Tok::Keyword(Keyword::Block),
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            "nil" => Tok::Nil,
            _ => Tok::Ident(word.to_owned()),
        };
        self.emit(tok, start);
        Ok(())
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Go's number scanner: sign, base prefix, digits with `_`, fraction, exponent. The
    /// value is checked by the parser.
    fn lex_number(&mut self, start: Pos) -> Result<(), Error> {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.bump();
            return Err(Error::new(
                start,
                format!("bad number syntax: {:?}", &self.src[start..self.pos]),
            ));
        }
        self.emit(Tok::Number(self.src[start..self.pos].to_owned()), start);
        Ok(())
    }

    /// The body of a quoted literal up to the closing `quote`, which may not span lines.
    fn quoted_body(&mut self, start: Pos, quote: char, what: &str) -> Result<&'a str, Error> {
        let body = self.pos;
        loop {
            match self.bump() {
                Some('\\') => match self.bump() {
                    Some('\n') | None => break,
                    Some(_) => {}
                },
                Some('\n') | None => break,
                Some(c) if c == quote => return Ok(&self.src[body..self.pos - 1]),
                Some(_) => {}
            }
        }
        Err(Error::new(start, format!("unterminated {what}")))
    }

    fn lex_quote(&mut self, start: Pos) -> Result<(), Error> {
        let body = self.quoted_body(start, '"', "quoted string")?;
        let value = unquote(body, '"').map_err(|m| Error::new(start, m))?;
        self.emit(Tok::Str(value), start);
        Ok(())
    }

    fn lex_raw_quote(&mut self, start: Pos) -> Result<(), Error> {
        let Some(len) = self.rest().find('`') else {
            return Err(Error::new(start, "unterminated raw quoted string"));
        };
        // Go drops carriage returns from raw strings.
        let value = self.rest()[..len].replace('\r', "");
        self.pos += len + 1;
        self.emit(Tok::Str(value), start);
        Ok(())
    }

    fn lex_char(&mut self, start: Pos) -> Result<(), Error> {
        let body = self.quoted_body(start, '\'', "character constant")?;
        let value = unquote(body, '\'').map_err(|m| Error::new(start, m))?;
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                self.emit(Tok::CharConst(c), start);
                Ok(())
            }
            _ => Err(Error::new(
                start,
                format!("malformed character constant: '{body}'"),
            )),
        }
    }
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

/// Resolves Go escape sequences in the body of a `quote`-delimited literal.
fn unquote(body: &str, quote: char) -> Result<String, String> {
    fn hex_digits(chars: &mut std::str::Chars, n: usize) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| "invalid hexadecimal escape sequence".to_owned())?;
            v = v * 16 + d;
        }
        Ok(v)
    }
    fn scalar(v: u32) -> Result<char, String> {
        char::from_u32(v)
            .ok_or_else(|| format!("escape sequence is invalid Unicode code point U+{v:X}"))
    }

    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut buf = [0u8; 4];
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars
            .next()
            .ok_or("invalid escape sequence at end of literal")?;
        let simple = match e {
            'a' => Some(b'\x07'),
            'b' => Some(b'\x08'),
            'f' => Some(b'\x0c'),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(b'\x0b'),
            '\\' => Some(b'\\'),
            '"' | '\'' if e == quote => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        match e {
            'x' => out.push(hex_digits(&mut chars, 2)? as u8),
            'u' => out.extend_from_slice(
                scalar(hex_digits(&mut chars, 4)?)?
                    .encode_utf8(&mut buf)
                    .as_bytes(),
            ),
            'U' => out.extend_from_slice(
                scalar(hex_digits(&mut chars, 8)?)?
                    .encode_utf8(&mut buf)
                    .as_bytes(),
            ),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let d = chars
                        .next()
                        .and_then(|c| c.to_digit(8))
                        .ok_or("invalid octal escape sequence")?;
                    v = v * 8 + d;
                }
                if v > 255 {
                    return Err(format!("octal escape value {v} > 255"));
                }
                out.push(v as u8);
            }
            _ => return Err(format!("unknown escape sequence \\{e}")),
        }
    }
    String::from_utf8(out).map_err(|_| "literal is not valid UTF-8".to_owned())
}
