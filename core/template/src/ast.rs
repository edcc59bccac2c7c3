//! The parsed form of a template.

use serde_json::Value;

/// A byte offset into the template source.
pub(crate) type Pos = usize;

/// A node of a template body.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Literal text, copied to the output.
    Text(String),
    /// `{{ pipeline }}`: printed unless the pipeline declares or assigns variables.
    Action(Pipeline),
    /// `{{ if }}`: `else if` chains nest an `If` as the only node of `else_list`.
    If(Branch),
    /// `{{ with }}`: like `if`, and sets dot to the pipeline's value.
    With(Branch),
    /// `{{ range }}`.
    Range(Branch),
    Break,
    Continue,
    /// `{{ template "name" pipeline }}` (also what `{{ block }}` leaves in place).
    Template {
        pos: Pos,
        name: String,
        pipe: Option<Pipeline>,
    },
}

/// The parts shared by `if`, `with` and `range`.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    /// Position of the keyword.
    pub pos: Pos,
    pub pipe: Pipeline,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

/// Commands separated by `|`, optionally preceded by variable declarations (`$x :=`,
/// `$i, $e :=` in `range`) or an assignment (`$x =`).
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub decl: Vec<(String, Pos)>,
    pub is_assign: bool,
    /// Never empty.
    pub cmds: Vec<Command>,
}

/// One stage of a pipeline: a function and its arguments, or a single operand.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// Never empty.
    pub args: Vec<Operand>,
}

/// A field name in a chain such as `.a.b`, with its own position for error messages.
#[derive(Debug, Clone)]
pub(crate) struct FieldName {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// `.`
    Dot(Pos),
    /// `nil`
    Nil(Pos),
    /// A bool, number, string or character constant.
    Literal(Pos, Value),
    /// `.a.b`: fields of dot. Never empty.
    Field(Vec<FieldName>),
    /// `$x`, `$x.a.b`.
    Variable {
        pos: Pos,
        name: String,
        fields: Vec<FieldName>,
    },
    /// A function name.
    Function { pos: Pos, name: String },
    /// `(pipeline).a.b` or `fn.a`: fields of some other operand's value.
    Chain {
        base: Box<Operand>,
        fields: Vec<FieldName>,
    },
    /// `(pipeline)`.
    Pipe(Pos, Box<Pipeline>),
}

impl Operand {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Operand::Dot(pos)
            | Operand::Nil(pos)
            | Operand::Literal(pos, _)
            | Operand::Variable { pos, .. }
            | Operand::Function { pos, .. }
            | Operand::Pipe(pos, _) => *pos,
            Operand::Field(fields) => fields.first().map_or(0, |f| f.pos),
            Operand::Chain { base, .. } => base.pos(),
        }
    }

    /// A short rendering for error messages.
    pub(crate) fn describe(&self) -> String {
        fn fields_str(fields: &[FieldName]) -> String {
            fields.iter().map(|f| format!(".{}", f.name)).collect()
        }
        match self {
            Operand::Dot(_) => ".".to_owned(),
            Operand::Nil(_) => "nil".to_owned(),
            Operand::Literal(_, Value::String(s)) => crate::gofmt::go_quote(s),
            Operand::Literal(_, v) => v.to_string(),
            Operand::Field(fields) => fields_str(fields),
            Operand::Variable { name, fields, .. } => format!("{name}{}", fields_str(fields)),
            Operand::Function { name, .. } => name.clone(),
            Operand::Chain { base, fields } => format!("{}{}", base.describe(), fields_str(fields)),
            Operand::Pipe(..) => "(...)".to_owned(),
        }
    }
}
