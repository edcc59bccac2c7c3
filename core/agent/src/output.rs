//! How read commands print what they fetched: their own text, `-json`, or `-t` with a Go
//! template (the project's engine, `drover-template`), as Nomad's `-json` and `-t`.

use anyhow::{Context, bail};

/// `-json` and `-t '<template>'`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Format {
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the answer through a Go template, e.g. -t '{{.ID}}'.
    #[arg(short = 't', value_name = "TEMPLATE")]
    pub template: Option<String>,
}

impl Format {
    /// Prints `value` as JSON or through the template and returns true; false when neither
    /// was asked for (the command prints its own text).
    pub fn print(&self, value: &impl serde::Serialize) -> anyhow::Result<bool> {
        match self.render(value)? {
            Some(text) => {
                print!("{text}");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// What [`Format::print`] prints.
    pub fn render(&self, value: &impl serde::Serialize) -> anyhow::Result<Option<String>> {
        match (self.json, &self.template) {
            (true, Some(_)) => bail!("Both json and template formatting are not allowed"),
            (true, None) => Ok(Some(format!("{}\n", serde_json::to_string_pretty(value)?))),
            (false, Some(t)) => {
                let opts = drover_template::Options {
                    name: "-t",
                    ..Default::default()
                };
                let tmpl = drover_template::Template::parse(t, &opts, &())
                    .context("the -t template does not parse")?;
                let dot = serde_json::to_value(value)?;
                let text = tmpl
                    .render(&dot, &mut ())
                    .context("the -t template failed")?;
                Ok(Some(text))
            }
            (false, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_or_a_go_template_but_not_both() {
        let v = serde_json::json!({"ID": "abc", "Tasks": [{"Name": "a"}, {"Name": "b"}]});
        let f = Format {
            template: Some("{{.ID}}:{{range .Tasks}} {{.Name}}{{end}}".into()),
            ..Default::default()
        };
        assert_eq!(f.render(&v).unwrap().as_deref(), Some("abc: a b"));
        let f = Format {
            json: true,
            ..Default::default()
        };
        assert!(f.render(&v).unwrap().unwrap().contains("\"ID\": \"abc\""));
        assert_eq!(Format::default().render(&v).unwrap(), None);
        let f = Format {
            json: true,
            template: Some("{{.ID}}".into()),
        };
        assert!(f.render(&v).is_err());
        let f = Format {
            template: Some("{{.ID".into()),
            ..Default::default()
        };
        let e = f.render(&v).unwrap_err();
        assert!(format!("{e:#}").contains("-t:1:"), "{e:#}");
    }
}
