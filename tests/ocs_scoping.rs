//! The OCS chat API across organizations: a keyless `chat/start` finds the chatbot in
//! whichever organization has it (one lookup by id: the bot decides the organization), and
//! everything the session reads afterwards stays in that organization.

mod common;
#[path = "common/ocs.rs"]
mod ocs;

use ocs::*;
use serde_json::json;

fn set_public_in(s: &Ocs, org: &str, bot: &str, public: bool) {
    let st = s.store();
    let mut settings = st.get_bot(org, bot).unwrap().settings.clone();
    settings.web_chat_public = public;
    st.update_bot(
        org,
        bot,
        botyard::store::BotPatch {
            settings: Some(settings),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn keyless_chat_start_finds_the_bot_in_its_own_organization() {
    let s = Ocs::start();
    let c = s.client();
    // Several organizations, the chatbot in the last one.
    for i in 0..5 {
        s.org2(&format!("Filler {i}"));
    }
    let org2 = s.org2("Other team");
    let bot2 = s.bot_with(
        &org2,
        "Other bot",
        "start:\n  say \"from the other team\"\n  goto end\n",
        None,
    );
    // Private: refused as such, not "not found".
    let r = c.post("/api/chat/start/", &[], &json!({"chatbot_id": bot2}));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "chat_access_denied");
    // Public: the session belongs to the bot's organization and chats there.
    set_public_in(&s, &org2, &bot2, true);
    let (sid, token) = s.start_chat_for(&bot2);
    let sess = s
        .store()
        .ocs_session(&org2, &sid)
        .unwrap()
        .expect("session");
    assert_eq!(sess.organization_id, org2);
    assert!(s.store().ocs_session(&s.org, &sid).unwrap().is_none());
    let v = s.chat_turn(&sid, &token, "hi");
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(v["message"]["content"], "from the other team");
    // A key of the first organization is no member of the second: an anonymous participant.
    let r = c.post("/api/chat/start/", &s.auth(), &json!({"chatbot_id": bot2}));
    assert_eq!(r.status, 201, "{}", r.text());
    let ident = r.json()["participant"]["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ident.starts_with("anon:"), "{ident}");
    // The first organization's key does not see the session through its own API.
    let r = s.get(&format!("/api/sessions/{sid}/"));
    assert_eq!(r.status, 404, "{}", r.text());
    // No such chatbot anywhere.
    let r = c.post(
        "/api/chat/start/",
        &[],
        &json!({"chatbot_id": "00000000-0000-0000-0000-000000000000"}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"detail": "No Experiment matches the given query."})
    );
}
