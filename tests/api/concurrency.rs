use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn concurrent_accepts_of_one_offer_decide_it_once(db: Db) {
    let app = spawn_app(db).await;
    for round in 1..=5 {
        app.put_order(round, 7).await;
        let (id, _) = app.offer_ok(round, 3, None).await;
        let token = app.master_token(3);
        let path = format!("/api/v1/assignments/{id}/accept");
        let mut sockets = Vec::new();
        for _ in 0..4 {
            sockets.push(app.master_ws(3).await);
        }
        let http = join_all((0..8).map(|_| app.request(Method::POST, &path, Some(&token), None)));
        let ws = join_all(sockets.iter_mut().map(|ws| async move {
            ws.send(json!({"type": "accept_assignment", "assignmentId": id}))
                .await;
            loop {
                let reply = ws.recv().await;
                if reply["type"] != "order_status_update" {
                    return reply;
                }
            }
        }));
        let (http, ws) = tokio::join!(http, ws);
        let http_wins = http.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        let ws_wins = ws
            .iter()
            .filter(|m| m["type"] == "assignment_accepted")
            .count();
        assert_eq!(http_wins + ws_wins, 1, "round {round}: {http:?} {ws:?}");
        assert!(http.iter().all(|(s, b)| *s == StatusCode::OK
            || (*s == StatusCode::CONFLICT && b["code"] == "assignment_not_pending")));
        assert!(
            ws.iter().all(
                |m| m["type"] == "assignment_accepted" || m["code"] == "assignment_not_pending"
            )
        );
    }
}

async fn when_masters_race_for_one_order_the_first_accept_wins_it(db: Db) {
    let app = &spawn_app(db).await;
    for round in 1..=30 {
        app.put_order(round, 7).await;
        let masters = [3, 4, 5, 6];
        let mut ids = Vec::new();
        for master in masters {
            ids.push(app.offer_ok(round, master, None).await.0);
        }
        let results = join_all(masters.iter().zip(&ids).map(|(&master, &id)| {
            let token = app.master_token(master);
            async move {
                (
                    master,
                    app.request(
                        Method::POST,
                        &format!("/api/v1/assignments/{id}/accept"),
                        Some(&token),
                        None,
                    )
                    .await,
                )
            }
        }))
        .await;
        let winners: Vec<i64> = results
            .iter()
            .filter(|(_, (s, _))| *s == StatusCode::OK)
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        // Losers are told the offer is gone, never an internal error (a deadlock).
        assert!(
            results.iter().all(|(_, (s, b))| *s == StatusCode::OK
                || (*s == StatusCode::CONFLICT && b["code"] == "assignment_not_pending")),
            "round {round}: {results:?}"
        );
        let statuses: Vec<String> = join_all(ids.iter().map(|&id| app.get_assignment(id)))
            .await
            .iter()
            .map(|a| a["status"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| *s == "accepted").count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| *s == "cancelled").count(),
            3,
            "{statuses:?}"
        );
        let (_, order) = app
            .request(
                Method::PATCH,
                &format!("/api/v1/orders/{round}/status"),
                Some(&app.service_token()),
                Some(json!({"status": "assigned"})),
            )
            .await;
        assert_eq!(order["masterId"], winners[0]);
    }
}

/// An offer made while another master accepts the order must not stay pending on a taken order.
async fn an_offer_racing_an_accept_never_stays_pending_on_a_taken_order(db: Db) {
    let app = &spawn_app(db).await;
    for round in 1..=200 {
        app.put_order(round, 7).await;
        let (first, _) = app.offer_ok(round, 3, None).await;
        let (path, token) = (
            format!("/api/v1/assignments/{first}/accept"),
            app.master_token(3),
        );
        let accept = app.request(Method::POST, &path, Some(&token), None);
        let ((accepted, _), (offered, body)) = tokio::join!(accept, app.offer(round, 4, None));
        assert_eq!(accepted, StatusCode::OK);
        match offered {
            StatusCode::CONFLICT => assert_eq!(body["code"], "conflict"),
            StatusCode::CREATED => {
                let late = body["assignment"]["id"].as_i64().unwrap();
                let stored = app.get_assignment(late).await;
                assert_eq!(stored["status"], "cancelled", "round {round}: {stored}");
            }
            other => panic!("round {round}: offer answered {other}: {body}"),
        }
    }
}

/// Twenty first writes of one new order, and of one new master's shift, all succeed.
async fn concurrent_first_writes_of_one_id_all_succeed(db: Db) {
    let app = &spawn_app(db).await;
    let token = app.service_token();
    let body = json!({"clientUserId": 7, "address": "Lenina 1", "deviceType": "d", "problem": "p"});
    for id in 500..510 {
        let (order, shift) = (
            format!("/api/v1/orders/{id}"),
            format!("/api/v1/masters/{id}/shift"),
        );
        let puts =
            (0..20).map(|_| app.request(Method::PUT, &order, Some(&token), Some(body.clone())));
        let shifts = (0..20).map(|i| {
            let on = json!({"onShift": i % 2 == 0});
            app.request(Method::PUT, &shift, Some(&token), Some(on))
        });
        let (puts, shifts) = tokio::join!(join_all(puts), join_all(shifts));
        for (status, body) in puts.iter().chain(&shifts) {
            assert_eq!(*status, StatusCode::OK, "id {id}: {body}");
        }
    }
}

on_both_backends!(
    concurrent_first_writes_of_one_id_all_succeed,
    concurrent_accepts_of_one_offer_decide_it_once,
    an_offer_racing_an_accept_never_stays_pending_on_a_taken_order,
    when_masters_race_for_one_order_the_first_accept_wins_it,
);
