//! Every real capture in `tests/fixtures/vapi/` parses into its variant, values checked.

use serde::Deserialize;
use serde_json::Value;
use vapi_webhooks::vapi::reply::{AssistantReply, ToolCallsReply};
use vapi_webhooks::vapi::{CallStatus, EndedReason, ServerMessage};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/vapi/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> ServerMessage {
    ServerMessage::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Deserialize, PartialEq)]
struct CityState {
    city: String,
    state: String,
}

fn danville() -> CityState {
    CityState {
        city: "Danville".into(),
        state: "California".into(),
    }
}

#[test]
fn assistant_request_fixture() {
    let msg = parse("vapi4k_assistantRequest.json");
    assert_eq!(msg.type_name(), "assistant-request");
    let ServerMessage::AssistantRequest(m) = &msg else {
        panic!("wrong variant: {msg:?}")
    };
    // ISO-8601 timestamp form.
    assert_eq!(m.timestamp.unwrap().unix_millis(), 1_721_933_627_736);
    let call = m.call.as_ref().unwrap();
    assert_eq!(
        call.id.as_deref(),
        Some("b1223960-1b4d-4585-91b8-a69b0f57ec2f")
    );
    assert_eq!(call.kind.as_deref(), Some("inboundPhoneCall"));
    assert_eq!(
        call.org_id.as_deref(),
        Some("379a13ec-f40d-4055-8959-797c4ee1694s")
    );
    assert_eq!(call.assistant_id, None, "`null` reads as absent");
    assert_eq!(call.squad_id, None);
    assert_eq!(call.status, Some(CallStatus::RINGING));
    assert_eq!(
        call.phone_number_id.as_deref(),
        Some("4a5a04dc-dcbe-45b1-8f64-fd32a253d136")
    );
    assert_eq!(
        call.created_at.unwrap().unix_millis(),
        1_721_933_627_585 // 2024-07-25T18:53:47.585Z
    );
    let phone = msg.phone_number().unwrap();
    assert_eq!(
        phone.id.as_deref(),
        Some("4a5a04dc-dcbe-45b1-8f64-fd32a253d136")
    );
    assert_eq!(phone.number.as_deref(), Some("+19254207621"));
    assert_eq!(phone.provider.as_deref(), Some("twilio"));
    assert!(phone.raw.get().contains("twilioAuthToken"));
    assert_eq!(
        msg.customer().unwrap().number.as_deref(),
        Some("+14566836490")
    );
    assert!(msg.assistant().is_none());
}

#[test]
fn tool_calls_fixture() {
    let msg = parse("vapi4k_toolRequest1.json");
    let ServerMessage::ToolCalls(m) = &msg else {
        panic!("wrong variant: {msg:?}")
    };
    assert_eq!(m.timestamp.unwrap().unix_millis(), 1_722_032_457_931);
    assert_eq!(m.tool_call_list.as_ref().unwrap().len(), 1);
    assert_eq!(m.tool_calls.as_ref().unwrap().len(), 1);
    let with = &m.tool_with_tool_call_list.as_ref().unwrap()[0];
    assert_eq!(with.kind.as_deref(), Some("function"));
    assert_eq!(
        with.function.as_ref().unwrap().name.as_deref(),
        Some("getWeatherByCity_001")
    );
    assert_eq!(with.is_async, Some(false));
    assert!(with.server.as_ref().unwrap().get().contains("\"secret\""));
    assert_eq!(with.tool_call.as_ref().unwrap().id, "call_51kj");

    // The same call arrives in all three lists: reported once.
    let calls = m.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "call_51kj");
    assert_eq!(calls[0].kind.as_deref(), Some("function"));
    assert_eq!(calls[0].name, "getWeatherByCity_001");
    // Object-form arguments.
    assert_eq!(calls[0].arguments.parse::<CityState>().unwrap(), danville());

    // String-form arguments in the artifact's tool_calls message.
    let artifact = m.artifact.as_ref().unwrap();
    let tool_msg = &artifact.messages.as_ref().unwrap()[2];
    assert_eq!(tool_msg.role, "tool_calls");
    let tc = &tool_msg.tool_calls.as_ref().unwrap()[0];
    assert_eq!(tc.id, "call_51kj");
    assert_eq!(tc.arguments.parse::<CityState>().unwrap(), danville());
    let openai = &artifact.messages_openai_formatted.as_ref().unwrap()[2];
    assert_eq!(openai.role, "assistant");
    assert_eq!(openai.content.as_deref(), Some(""));
    assert_eq!(
        openai.tool_calls.as_ref().unwrap()[0]
            .arguments
            .parse::<CityState>()
            .unwrap(),
        danville()
    );

    // Transient squad: no assistant id anywhere, squad kept raw.
    let call = m.call.as_ref().unwrap();
    assert_eq!(call.assistant_id, None);
    assert!(call.squad.as_ref().unwrap().get().contains("assistant2"));
    assert_eq!(
        msg.phone_number().unwrap().id.as_deref(),
        Some("4a5a04dc-dcbe-45b1-8f64-fd32a253d136")
    );
}

#[test]
fn end_of_call_report_fixture() {
    let msg = parse("vapi4k_endOfCallReportRequest.json");
    let ServerMessage::EndOfCallReport(m) = &msg else {
        panic!("wrong variant: {msg:?}")
    };
    assert_eq!(m.timestamp.unwrap().unix_millis(), 1_722_115_445_712);
    assert_eq!(m.ended_reason, Some(EndedReason::CUSTOMER_ENDED_CALL));
    // Real reports carry these at the top level; the artifact's lists are empty.
    assert_eq!(
        m.recording_url(),
        Some(
            "https://auth.vapi.ai/storage/v1/object/public/recordings/b2d2c06d-bca1-4804-8b68-cb1b6fd7debd-1722115443568-3b56a504-192d-4ec0-a034-a055c60e0277-mono.wav"
        )
    );
    assert_eq!(
        m.stereo_recording_url(),
        Some(
            "https://auth.vapi.ai/storage/v1/object/public/recordings/b2d2d06c-bca1-4804-8b68-cb1b6fd7debd-1722115443569-a5885c56-7ddb-4e5d-beee-665d41a2c00a-stereo.wav"
        )
    );
    assert!(
        m.transcript()
            .unwrap()
            .starts_with("AI: Hi there. I'm assistant 1.\nUser: ")
    );
    assert!(
        m.summary()
            .unwrap()
            .starts_with("The user inquired about the weather")
    );
    let analysis = m.analysis.as_ref().unwrap();
    assert_eq!(analysis.success_evaluation.as_deref(), Some("true"));
    let messages = m.messages();
    assert_eq!(messages.len(), 17);
    assert_eq!(messages[0].role, "system");
    assert_eq!(messages[4].role, "tool_call_result");
    assert_eq!(messages[4].tool_call_id.as_deref(), Some("call_hncn"));
    assert_eq!(messages[4].name.as_deref(), Some("getWeatherByCity_001"));
    assert_eq!(
        messages[4].result.as_deref(),
        Some("The weather in Danville, California is windy")
    );
    assert_eq!(messages[3].tool_calls.as_ref().unwrap()[0].id, "call_hncn");
    assert_eq!(messages[5].time, Some(1_722_115_418_016.999));
    assert_eq!(m.cost, None);
}

#[test]
fn end_of_call_report_with_cost_and_times() {
    // A copy of the capture with the fields newer reports add.
    let mut body: Value =
        serde_json::from_slice(&fixture("vapi4k_endOfCallReportRequest.json")).unwrap();
    let msg = body["message"].as_object_mut().unwrap();
    msg.insert("cost".into(), 0.1234.into());
    msg.insert(
        "costs".into(),
        serde_json::json!([{"type":"model","cost":0.1,"model":{"provider":"groq"}},{"type":"vapi","cost":0.0234,"subType":"normal"}]),
    );
    msg.insert("startedAt".into(), "2024-07-27T21:23:26.000Z".into());
    msg.insert("endedAt".into(), "2024-07-27T21:24:04.500Z".into());
    msg.insert(
        "endedReason".into(),
        "call.in-progress.error-brand-new".into(),
    );
    msg.insert("timestamp".into(), 1_722_115_445_712_u64.into());
    msg.insert(
        "artifact".into(),
        serde_json::json!({"recordingUrl":"https://r.example/mono.wav","transcript":"AI: hi","messages":[]}),
    );
    let ServerMessage::EndOfCallReport(m) =
        ServerMessage::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap()
    else {
        panic!("wrong variant")
    };
    assert_eq!(m.cost, Some(0.1234));
    let costs = m.costs.as_ref().unwrap();
    assert_eq!(costs[0].kind.as_deref(), Some("model"));
    assert_eq!(costs[1].cost, Some(0.0234));
    assert_eq!(m.started_at.unwrap().unix_millis(), 1_722_115_406_000);
    assert_eq!(m.ended_at.unwrap().unix_millis(), 1_722_115_444_500);
    assert_eq!(
        m.ended_reason.as_ref().unwrap().as_str(),
        "call.in-progress.error-brand-new"
    );
    // Epoch-ms form of the same timestamp as the ISO capture.
    assert_eq!(m.timestamp.unwrap().unix_millis(), 1_722_115_445_712);
    // The artifact wins over the top-level fields; empty artifact messages fall back.
    assert_eq!(m.recording_url(), Some("https://r.example/mono.wav"));
    assert_eq!(m.transcript(), Some("AI: hi"));
    assert_eq!(m.messages().len(), 17);
}

#[test]
fn status_update_fixture() {
    let msg = parse("mbvapi4k_statusUpdate2.json");
    let ServerMessage::StatusUpdate(m) = &msg else {
        panic!("wrong variant: {msg:?}")
    };
    // Epoch-ms timestamp form.
    let ts = m.timestamp.unwrap();
    assert_eq!(ts.unix_millis(), 1_727_030_665_008);
    assert_eq!(
        ts.as_system_time(),
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_727_030_665_008)
    );
    assert_eq!(m.status, Some(CallStatus::IN_PROGRESS));
    assert_eq!(m.ended_reason, None);
    let call = m.call.as_ref().unwrap();
    assert_eq!(
        call.id.as_deref(),
        Some("ebfad777-9c22-4b30-8df6-f2cb7b06590d")
    );
    assert_eq!(call.kind.as_deref(), Some("webCall"));
    assert_eq!(call.status, Some(CallStatus::QUEUED));
    assert_eq!(
        call.web_call_url.as_deref(),
        Some("https://vapi.daily.co/Stl1bcMDz2EQ9Cis03N5")
    );
    assert!(call.monitor.as_ref().unwrap().get().contains("listenUrl"));
    let assistant = m.assistant.as_ref().unwrap();
    assert_eq!(assistant.id, None, "transient assistant");
    assert!(assistant.raw.get().contains("llama3-70b-8192"));
    let artifact = m.artifact.as_ref().unwrap();
    assert_eq!(
        artifact.messages.as_ref().unwrap()[0].time,
        Some(1_727_030_664_971.0)
    );
}

#[test]
fn function_call_fixture() {
    let msg = parse("mbvapi4k_functionCall.json");
    let ServerMessage::FunctionCall(m) = &msg else {
        panic!("wrong variant: {msg:?}")
    };
    assert_eq!(msg.type_name(), "function-call");
    assert_eq!(m.timestamp.unwrap().unix_millis(), 1_725_227_048_480);
    let f = m.function_call.as_ref().unwrap();
    assert_eq!(f.name, "getFavFoodInChicago_001");
    let params: serde_json::Map<String, Value> = f.parameters.parse().unwrap();
    assert!(params.is_empty());
    assert_eq!(
        m.call.as_ref().unwrap().id.as_deref(),
        Some("f3b82dca-a37e-4150-a0ba-bb5f638f6957")
    );
    assert!(
        m.assistant
            .as_ref()
            .unwrap()
            .raw
            .get()
            .contains("gpt-4-turbo")
    );
}

#[test]
fn tool_call_response_fixture_is_a_tool_calls_reply() {
    let raw = fixture("mbvapi4k_toolCallResponse.json");
    let reply: ToolCallsReply = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply.results.len(), 1);
    let r = &reply.results[0];
    assert_eq!(r.tool_call_id(), "call_0DzZIopMbA5wP1YPTd2AW5TT");
    assert_eq!(r.name(), "getWeatherByCity_001");
    assert_eq!(
        r.result(),
        Some("The weather in city Danville and state California is windy")
    );
    assert_eq!(r.error(), None);
    assert!(r.message().unwrap().get().contains("request-complete"));
    // Round trip keeps every field.
    let again: Value = serde_json::to_value(&reply).unwrap();
    assert_eq!(again, serde_json::from_slice::<Value>(&raw).unwrap());
}

#[test]
fn assistant_request_response_fixture_is_an_assistant_reply() {
    let raw = fixture("mbvapi4k_assistantRequestResponse.json");
    let reply: AssistantReply = serde_json::from_slice(&raw).unwrap();
    assert!(
        reply
            .assistant
            .as_ref()
            .unwrap()
            .get()
            .contains("gpt-4-turbo")
    );
    assert_eq!(reply.assistant_id, None);
    assert_eq!(reply.error, None);
    let again: Value = serde_json::to_value(&reply).unwrap();
    assert_eq!(again, serde_json::from_slice::<Value>(&raw).unwrap());
}
