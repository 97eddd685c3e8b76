//! A small REST service backed by an embedded Optimystic node, all in one actix
//! System: notes stored as versioned blocks.
//!
//! ```text
//! cargo run --example actix_web_app -- --http 127.0.0.1:8080 --data-dir ./notes-data
//! curl -X PUT localhost:8080/notes/hello -d '{"text":"hi"}'
//! curl localhost:8080/notes/hello
//! curl localhost:8080/metrics        # the node's metrics, served by the host app
//! ```
//! It prints `serving on http://ADDR` once ready and shuts down cleanly on SIGINT/SIGTERM.

use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use optimystic::engine::model::{
    BlockGets, BlockId, BlockOperation, CommitRequest, PendPolicy, PendRequest, Transforms, TrxId,
};
use optimystic::node::{NodeBuilder, NodeHandle};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Note {
    text: String,
}

fn bad(status: u16, message: String) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"error": message}))
}

async fn get_note(node: web::Data<Arc<NodeHandle>>, id: web::Path<String>) -> HttpResponse {
    let Ok(bid) = BlockId::new(id.into_inner()) else {
        return bad(400, "bad note id".into());
    };
    match node
        .repo()
        .get(BlockGets {
            block_ids: vec![bid.clone()],
            context: None,
            consistency: None,
        })
        .await
    {
        Ok(r) => match r
            .get(&bid)
            .and_then(|b| Some((b.block.as_ref()?, b.state.latest.as_ref()?)))
        {
            Some((block, latest)) => HttpResponse::Ok()
                .json(json!({"id": bid, "text": block.fields.get("text"), "rev": latest.rev})),
            None => bad(404, "no such note".into()),
        },
        Err(e) => bad(500, e.to_string()),
    }
}

async fn put_note(
    node: web::Data<Arc<NodeHandle>>,
    id: web::Path<String>,
    note: web::Json<Note>,
) -> HttpResponse {
    let Ok(bid) = BlockId::new(id.into_inner()) else {
        return bad(400, "bad note id".into());
    };
    let repo = node.repo();
    let latest = match repo
        .get(BlockGets {
            block_ids: vec![bid.clone()],
            context: None,
            consistency: None,
        })
        .await
    {
        Ok(r) => r.get(&bid).and_then(|b| b.state.latest.clone()),
        Err(e) => return bad(500, e.to_string()),
    };
    let rev = latest.as_ref().map_or(1, |l| l.rev + 1);
    let transforms = match latest {
        None => {
            let block = json!({"header": {"id": bid, "type": "note", "collectionId": "notes"}, "text": note.text});
            match serde_json::from_value(block) {
                Ok(b) => Transforms {
                    inserts: Some([(bid.clone(), b)].into()),
                    ..Transforms::default()
                },
                Err(e) => return bad(400, e.to_string()),
            }
        }
        Some(_) => {
            let op = BlockOperation {
                entity: "text".into(),
                index: 0,
                delete_count: 0,
                inserted: json!(note.text),
            };
            Transforms {
                updates: Some([(bid.clone(), vec![op])].into()),
                ..Transforms::default()
            }
        }
    };
    let Ok(trx) = TrxId::new(format!("{bid}-{rev}")) else {
        return bad(400, "note id too long".into());
    };
    let pend = PendRequest {
        trx_id: trx.clone(),
        rev: Some(rev),
        transforms,
        policy: PendPolicy::Fail,
    };
    match repo.pend(pend).await {
        Ok(p) if p.is_success() => {}
        Ok(_) => return bad(409, "concurrent update; retry".into()),
        Err(e) => return bad(500, e.to_string()),
    }
    let commit = CommitRequest {
        trx_id: trx,
        block_ids: vec![bid.clone()],
        rev,
        header_id: None,
        tail_id: None,
    };
    match repo.commit(commit).await {
        Ok(c) if c.is_success() => HttpResponse::Ok().json(json!({"id": bid, "rev": rev})),
        Ok(_) => bad(409, "concurrent update; retry".into()),
        Err(e) => bad(500, e.to_string()),
    }
}

async fn metrics(node: web::Data<Arc<NodeHandle>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(node.render_metrics())
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> std::io::Result<()> {
    let http = arg("--http", "127.0.0.1:8080");
    let data_dir = arg("--data-dir", "./notes-data");
    actix_web::rt::System::new().block_on(async move {
        // The node joins this System: no second runtime.
        let node = NodeBuilder::new()
            .data_dir(data_dir)
            .listen("/ip4/127.0.0.1/tcp/0")
            .start()
            .await
            .map_err(std::io::Error::other)?;
        let node = Arc::new(node);
        let data = web::Data::new(node.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/notes/{id}", web::get().to(get_note))
                .route("/notes/{id}", web::put().to(put_note))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .bind(&http)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("not bound"))?;
        println!("serving on http://{addr}");
        // actix-web stops on SIGINT/SIGTERM and lets in-flight requests finish.
        server.run().await?;
        match Arc::try_unwrap(node) {
            Ok(node) => node.shutdown().await,
            Err(_) => eprintln!("node still referenced; storage is durable anyway"),
        }
        Ok(())
    })
}
