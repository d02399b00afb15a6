//! `baton template`: task definitions saved under a name, and tasks started from them.

use std::path::Path;

use anyhow::bail;
use baton_core::RepoSource;
use baton_store::Store;

use crate::cli::TemplateCommand;
use crate::show;
use crate::task::{self, now};

pub async fn run(home: &Path, command: TemplateCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Create { name, task } => {
            let template = task::definition(name, task.request, task.task)?;
            template.check().map_err(anyhow::Error::msg)?;
            // The base must be there now; each task resolves it again when it starts.
            let (repo, _) = baton_engine::fetched_base(home, &template.repo, &template.base)?;
            repo.ensure_outside(home)?;
            let store = crate::store::open(home).await?;
            store.add_template(&template, now()).await?;
            if json { show::json(&template) } else { show::template(&template) }
        }
        TemplateCommand::List => {
            let templates = crate::store::open(home).await?.templates().await?;
            if json {
                return show::json(&templates);
            }
            if templates.is_empty() {
                println!("no templates; make one with `baton template create --name N --request R --check CMD`");
            }
            for template in &templates {
                println!("{:<24} {}  ({})", template.name, show::headline(&template.request, 60), template.repo);
            }
            Ok(())
        }
        TemplateCommand::Show { name } => {
            let template = crate::store::open(home).await?.template(&name).await?;
            if json { show::json(&template) } else { show::template(&template) }
        }
        TemplateCommand::Delete { name } => {
            crate::store::open(home).await?.delete_template(&name).await?;
            if !json {
                println!("template {name} deleted");
            }
            Ok(())
        }
        TemplateCommand::Start { name } => {
            let store = crate::store::open(home).await?;
            let template = store.template(&name).await?;
            if let RepoSource::Local(path) = &template.repo
                && !path.exists()
            {
                bail!("template {name}: its repository {} is gone", path.display());
            }
            let state = task::start(&store, home, &template, None).await?;
            if json {
                show::json(&state)
            } else {
                println!("{}", state.id);
                Ok(())
            }
        }
    }
}
