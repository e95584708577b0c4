// The dispatcher's page. Plain DOM, no framework.
// Safety: every piece of text reaches the page through textContent or text nodes, never innerHTML,
// so a complaint containing markup is shown as typed and never parsed or run.

const HEADS = ["department", "category"];
const TOP_K = 5;
const DECISION_TEXT = { auto: "自动派单", review: "人工复核" };
const REASON_TEXT = {
  // A threshold of 1 is none: no confidence reached the target precision in training, and every
  // ticket goes to a person (docs/model.md). 置信度低于自动派单阈值 100% read as if a surer
  // suggestion would have been sent. One line in a card at 1024 x 768 (a longer one pushed the
  // 人工复核 badge out of view); the why is its tooltip (NEVER_AUTO_WHY).
  below_threshold: (h, head) =>
    neverAuto(h)
      ? `本模型的${head === "category" ? "类别" : "部门"}建议一律人工复核`
      : `置信度低于自动派单阈值 ${shownScores(h).threshold}`,
  no_known_terms: () => "无可识别的词语，请看附件或人工判断",
  catch_all: () => "建议部门为“其他”，不是可派单的具体部门，请人工指定",
  rule: () => "派单规则要求人工确认",
};
const PICKER_LIMIT = 50; // options shown at once; typing narrows the list
const DISPATCHER_KEY = "paidan.dispatcher_id";
// The API key (when the server has PAIDAN_API_KEYS) lives in sessionStorage: it is gone when the tab
// closes, and is sent only to this origin, as X-API-Key (see api()).
const API_KEY_STORE = "paidan.api_key";
// How long a request may go unanswered (a server or gateway that holds the connection open): then
// it is given up and said so, and 分派建议 or the save can be tried again. Longer than a gateway's
// usual 504 (nginx: 60 s) would never be reached; a route is answered in milliseconds.
const REQUEST_TIMEOUT_S = 30;

const $ = (id) => document.getElementById(id);
const form = $("route-form");
const textInput = $("ticket-text");
const titleInput = $("ticket-title");
const idInput = $("ticket-id");
const dispatcherInput = $("dispatcher-id");
const apiKeyInput = $("api-key");
const routeButton = $("route-button");
const confirmButton = $("confirm-button");

const state = {
  labels: { department: [], category: [] },
  request: null, // what was routed: {id, title, text}
  suggestion: null, // the /v1/route response, as shown
  choice: { department: null, category: null },
  co: [], // the departments to involve beside choice.department (a joint dispatch, 会办)
  coShown: [], // the toggles shown: the advice, then departments the dispatcher added
  savedKey: null, // the choice last saved, so a second click does not save it twice
  saving: null, // the suggestion whose decision is being saved: one save at a time for it
  // The save of the advice shown that failed, or whose outcome is unknown, and was not tried again
  // since: its words for the unsaved notice (reportUnsaved), said there once the dispatcher moves on
  // (清空, the next ticket), which takes its line under the advice away.
  failed: null,
  // Once a decision is saved the form is emptied for the next ticket: the suggestion saved and the
  // ticket id it was saved under, so that while the form stays empty a correction of it (提交更正)
  // still goes to that ticket.
  cleared: null,
  // Per ticket (its id, title and text), the decision last sent and not yet saved (its choice and
  // dispatcher) with its request_id, so a save of it sent again - after a 503 at the database's
  // commit, or no answer, whose outcome is unknown, or after routing the ticket again - is stored
  // once: the server answers the row stored first. Only the last one: a decision sent after another
  // for the ticket is the dispatcher's latest word, stored anew even if it was sent before.
  requestIds: new Map(),
  routeSeq: 0,
  routeAbort: null, // the AbortController of the route running, aborted when another supersedes it
  routeText: null, // the text that route sent
  // The number keys pressed while the route runs, before anything else was typed (holdKey): picks
  // of candidates once the advice is in, or text if typing goes on. {keys: [{head, n, char}],
  // start, end}: where in 诉求描述 they were pressed (null outside it), or null.
  held: null,
  // The server's limits, from GET /v1/model (PAIDAN_MAX_TEXT_CHARS, PAIDAN_MAX_TITLE_CHARS); the
  // defaults until it answers. No maxlength on the inputs: a paste over it would be cut silently.
  // departments: a joint dispatch's list joined with ；, lead included (max_departments_chars);
  // null, no check, from a server that does not say it. label: one department's or category's
  // name (max_label_chars), likewise.
  limits: { text: 20000, title: 200, departments: null, label: null },
  limitWarning: false, // whether route-status shows the over-limit warning
  // Date.now() before which the server asked not to be asked again (a 429's Retry-After): nothing
  // is sent until then, by the dispatcher (分派建议, a save) or by the header's own tries.
  retryAt: 0,
  // A 5xx's Retry-After (a 503's, a 500's, a gateway's 502), by request ("POST v1/feedback"):
  // {at, status, data, outcomeUnknown, reason}, the Date.now() before which that request is not
  // sent again and the answer that asked. Only what said it was unavailable waits: the feedback
  // database down holds saves, never routing.
  unavailableUntil: new Map(),
};

// -- small helpers --------------------------------------------------------------------------------

const NEVER_AUTO_WHY = "训练时任何置信度都达不到自动派单要求的准确率，所以本模型不自动派单";
// A ticket of punctuation, digits or emoji alone, or of a placeholder alone (见附件, 如题): its
// content is elsewhere, and the suggestion a guess from its characters (docs/labelling.md).
const NO_TERMS_WHY =
  "工单里没有模型认识的词语，或只有“见附件”“如题”“同上”之类：建议只是按字符猜测，请查看附件或人工判断";
// Whether a head never dispatches by itself: its auto threshold is 1 (or more).
function neverAuto(r) {
  return typeof r.threshold === "number" && r.threshold >= 1;
}

function pct(x) {
  return `${Math.round(Number(x) * 100)}%`;
}

// A head's confidence and auto threshold as the card shows them: whole percents, or as many
// decimals as it takes (up to the API's two) for a confidence below its threshold to read below
// it. Both rounded to whole percents, 0.9167 below 0.9192 read "置信度 92%" beside
// "置信度低于自动派单阈值 92%". The API's figures already compare as its decision did
// (model.router.shown_score), so its two decimals always tell them apart.
function shownScores(r) {
  const score = Number(r.score) * 100;
  const threshold = Number(r.threshold) * 100;
  let digits = 0;
  if (score < threshold) {
    const at = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
    while (digits < 2 && at(score, digits) >= at(threshold, digits)) digits += 1;
    if (at(score, digits) >= at(threshold, digits)) digits = 0; // equal in the answer itself (an older server)
  }
  const text = (x) => `${(Math.round(x * 10 ** digits) / 10 ** digits).toFixed(digits)}%`;
  return { score: text(score), threshold: Number.isFinite(threshold) ? text(threshold) : "" };
}

// el("li", {class: "x"}, "text", child): strings become text nodes, never markup.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

// node.replaceChildren(...children), which Chromium cores before 86 (older 360 and other domestic
// browsers' 极速模式) lack although they run this script.
function setChildren(node, ...children) {
  node.textContent = "";
  node.append(...children);
}

function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.className = `status ${kind}`.trim();
}

// Said by a screen reader (the polite, unseen #announce), without moving the focus.
function announce(text) {
  $("announce").textContent = text;
}

// Whether the focus fell to the page itself: a focused button that is disabled (while a request
// runs) drops it there, and it stays there when the button is enabled again.
function focusLost() {
  return !document.activeElement || document.activeElement === document.body;
}

// Whether a key is the input method's (a candidate being chosen, confirmed or cancelled), not the
// page's: keyCode 229 where a browser says so only that way (Safari, older Chromium cores).
function isComposing(e) {
  return e.isComposing || e.keyCode === 229;
}

function isEditable(target) {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}

// What a proxy's or login gateway's own page (HTML, often with status 200) or any answer not shaped
// like the API's becomes: never a success.
function unrecognised(status) {
  return `服务返回了无法识别的应答${status ? `（HTTP ${status}）` : ""}，可能需要重新登录，或稍后重试`;
}

// The seconds a Retry-After header asks to wait (RFC 9110: seconds, or an HTTP-date), or null.
function retryAfterS(value) {
  const v = String(value || "").trim();
  if (!v) return null;
  const at = /^\d+$/.test(v) ? Date.now() + Number(v) * 1000 : Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

// "40 秒" or, over two minutes, "3 分钟": how long a wait is, as said to the dispatcher.
function waitText(seconds) {
  return seconds > 120 ? `${Math.ceil(seconds / 60)} 分钟` : `${seconds} 秒`;
}

// A 429, the server's or the page's own while the wait it asked for runs: what is left of it said.
function tooManyRequests(seconds) {
  const error = new Error(
    `请求过于频繁，${seconds ? `请在 ${waitText(seconds)}后重试` : "请稍后重试"}（已填写的内容仍保留）`,
  );
  error.status = 429;
  error.retryAfter = seconds || null;
  error.fields = [];
  error.reason = causeText(429);
  return error;
}

// Where the API is: beside this script's static/ directory, whatever the page's own address.
// Behind a proxy that publishes the server under a sub-path (https://gw/paidan/), "/v1/route"
// left the sub-path, and "v1/route" resolved against a page opened as https://gw/paidan (no slash,
// which some proxies forward as the page itself) did too.
const SCRIPT = document.querySelector('script[type="module"][src$="app.js"]');
const API_BASE = new URL("../", SCRIPT ? SCRIPT.src : new URL("static/app.js", document.baseURI));

// `url` is relative ("v1/route"), resolved against API_BASE. `signal` cancels the request (the error
// thrown then has `cancelled`); one unanswered after REQUEST_TIMEOUT_S is given up.
async function api(method, url, body, signal) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const key = apiKeyInput.value.trim();
  // A key typed with a Chinese IME in full-width mode cannot go into a header at all (fetch throws
  // "non ISO-8859-1 code point"); keys are printable ASCII.
  if (/[^\x20-\x7e]/.test(key)) {
    apiKeyInput.focus();
    throw new Error(
      "API 密钥含有全角或中文字符；密钥只能是半角英文字母、数字和符号，请切换到半角（英文）输入后重新填写",
    );
  }
  // As X-API-Key, not Authorization: a single-sign-on gateway in front (oauth2-proxy, a portal's
  // 统一身份认证) forwards its own Authorization: Bearer token in place of the page's, and every
  // save was refused as "API 密钥不正确" although the key was right. The server takes either header,
  // and of a request carrying both (the gateway's token beside this key) either valid key.
  if (key) headers["X-API-Key"] = key;
  const wait = Math.ceil((state.retryAt - Date.now()) / 1000);
  if (wait > 0) throw tooManyRequests(wait); // the server asked for that long; not sent
  const unavailable = state.unavailableUntil.get(`${method} ${url}`);
  const left = unavailable ? Math.ceil((unavailable.at - Date.now()) / 1000) : 0;
  if (left > 0) {
    // As the 5xx said, with the wait left; not sent.
    const error = apiError(unavailable.status, unavailable.data, left);
    error.outcomeUnknown = unavailable.outcomeUnknown;
    error.reason = unavailable.reason;
    throw error;
  }
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, REQUEST_TIMEOUT_S * 1000);
  const cancel = () => controller.abort();
  if (signal) signal.addEventListener("abort", cancel);
  if (signal && signal.aborted) controller.abort();
  let res;
  let data = null;
  try {
    res = await fetch(new URL(url, API_BASE).href, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    data = await res.json().catch(() => null); // an abort here too: checked below
  } catch (e) {
    res = null;
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", cancel);
  }
  if (timedOut) {
    // The server or a gateway held the request open: it may have been served (a save stored).
    const error = new Error(
      `服务器在 ${REQUEST_TIMEOUT_S} 秒内没有应答，请稍后重试（已填写的内容仍保留）`,
    );
    error.outcomeUnknown = true;
    error.reason = `服务器在 ${REQUEST_TIMEOUT_S} 秒内没有应答`;
    throw error;
  }
  if (controller.signal.aborted) {
    const error = new Error("已取消");
    error.cancelled = true;
    throw error;
  }
  if (res === null) {
    // No answer at all (server stopped or restarting, network down): "Failed to fetch".
    serverLost(url);
    const error = new Error("无法连接服务器，请检查网络或稍后重试（已填写的内容仍保留）");
    error.outcomeUnknown = true; // it may have reached the server
    error.reason = "没有收到服务器的应答";
    throw error;
  }
  if (!res.ok) {
    if (res.status === 502 || res.status === 504) serverLost(url); // a gateway's: none behind it
    const retryAfter = retryAfterS(res.headers.get("Retry-After"));
    if (res.status === 429) {
      if (retryAfter) state.retryAt = Math.max(state.retryAt, Date.now() + retryAfter * 1000);
      throw tooManyRequests(retryAfter);
    }
    const error = apiError(res.status, data, retryAfter);
    // A gateway's 502 or 504 (the server never answers them), or another 5xx that is not the
    // API's: the request may have been served (stored) before the gateway gave up on its answer.
    const gateway =
      res.status === 502 || res.status === 504 || (res.status >= 500 && !isApiError(data));
    error.outcomeUnknown = atCommit(data) || gateway;
    if (atCommit(data)) error.reason = "反馈数据库在保存的最后一步中断";
    else if (gateway) error.reason = `服务器暂时不可用（${res.status}）`;
    if (res.status >= 500 && retryAfter) {
      // Any 5xx's Retry-After (a 503's, a 500's, a gateway's 502) holds the request it answered
      // until then, as it says. A save cut at the commit is said once, with its outcome unknown;
      // held, it is only unavailable.
      const commit = atCommit(data);
      state.unavailableUntil.set(`${method} ${url}`, {
        at: Date.now() + retryAfter * 1000,
        status: res.status,
        data: commit ? { error: { code: "database_unavailable" } } : data,
        outcomeUnknown: !commit && error.outcomeUnknown,
        reason: commit ? undefined : error.reason,
      });
    }
    throw error;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new Error(unrecognised(res.status));
  }
  return data;
}

// The error of an API's answer `data` with `status`, waiting `retryAfter` seconds (or null) said.
function apiError(status, data, retryAfter) {
  const error = new Error(errorText(status, data, retryAfter));
  error.status = status;
  error.retryAfter = retryAfter;
  error.code = (data && data.error && data.error.code) || null;
  error.fields = refusedFields(data);
  error.reason = causeText(status, error.code);
  return error;
}

// What went wrong, without what to do about it nor when, for the notice of a ticket left unsaved
// (reportUnsaved), which stays through the next tickets: 反馈数据库暂时不可用，请在 4 秒后重新保存
// there told a wait long over, beside its own 请重新分派该工单后再保存. Undefined: the message says it.
function causeText(status, code) {
  if (status === 429) return "请求过于频繁";
  if (code === "database_unavailable") return "反馈数据库暂时不可用";
  if (code === "internal_error") return "服务器内部错误（已记入服务器日志）";
  if (code === "model_not_loaded") return "服务器正在加载模型";
  if (status === 502 || status === 503 || status === 504) return `服务器暂时不可用（${status}）`;
  if (status >= 500) return `服务器出错（HTTP ${status}）`;
  return undefined;
}

// The body fields an error answer names ("masked" for "body.masked"): the API's `field`, and those of
// FastAPI's plain {"detail": [{"loc": [...]}]}.
function refusedFields(data) {
  const err = (data && data.error) || {};
  const detail = data && Array.isArray(data.detail) ? data.detail : [];
  return [err.field, ...detail.map((d) => (Array.isArray(d && d.loc) ? d.loc.join(".") : ""))]
    .filter(Boolean)
    .map((f) => String(f).replace(/^body\./, ""));
}

// Whether an error answer is the API's own ({"error": {...}}; FastAPI's {"detail"}), not a gateway's.
function isApiError(data) {
  return Boolean(data && typeof data === "object" && (data.error || data.detail));
}

// What a save whose outcome is unknown says: it may be stored, and saving again is safe.
function unconfirmed(e) {
  const again = e.retryAfter ? `请在 ${waitText(e.retryAfter)}后重新保存` : "可以放心重新保存";
  return `${e.reason}，无法确认是否已保存；${again}，同一派单不会重复记录`;
}

// Whether an error answer is the feedback database's failure at the commit: the row may be stored.
function atCommit(data) {
  const err = (data && data.error) || {};
  return err.code === "database_unavailable" && /at the commit/.test(String(err.message || ""));
}

// The page's names of the fields the API may name in an error.
const FIELD_TEXT = {
  text: "诉求描述",
  title: "标题",
  id: "工单编号",
  ticket_id: "工单编号",
  dispatcher_id: "调度员编号",
  department: "部门",
  category: "类别",
};

// What went wrong, in Chinese; the server's own (English) message, when there is one, follows in
// brackets for whoever has to look into it.
function errorText(status, data, retryAfter = null) {
  // The API answers {"error": {"code", "message", "field"}}; plain FastAPI {"detail"} is tolerated.
  const err = (data && data.error) || {};
  let message = err.message ? String(err.message) : "";
  const detail = data && data.detail;
  if (!message && Array.isArray(detail)) {
    // FastAPI validation errors: say which field and why.
    message = detail
      .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`)
      .join("；");
  } else if (!message && typeof detail === "string") message = detail;
  const more = message ? `（${message}）` : "";
  const field = String(err.field || "").replace(/^body\./, "");
  if ((status === 401 || status === 403) && !err.code) {
    // Not the API's refusal of a key but a gateway's in front (its single-sign-on session expired,
    // nginx auth_request): a server without keys sent the dispatcher to the 「API 密钥」 field.
    return `门户或网关拒绝了请求（HTTP ${status}），可能是登录已过期：请刷新本页，重新登录后再试`;
  }
  if (status === 401 || status === 403) {
    apiKeyInput.focus();
    if (status === 403) return `此 API 密钥无权进行该操作，请换用有权限的密钥${more}`;
    return apiKeyInput.value.trim()
      ? "API 密钥不正确，请在页面顶部「API 密钥」中重新填写"
      : "需要 API 密钥，请在页面顶部「API 密钥」中填写";
  }
  if (field === "text" && /is empty/.test(message)) {
    return "诉求内容为空（只有空格、换行或不可见字符），请输入诉求内容";
  }
  if (status === 422 || status === 400) {
    const name = FIELD_TEXT[field];
    return `${name ? `${name}不符合要求` : "请求内容不符合要求"}${more}`;
  }
  if (status === 413) return `内容过长，超过服务器允许的大小${more}`;
  // The request line and headers over PAIDAN_MAX_HEADER_BYTES: on a portal host shared by many
  // applications, their cookies, which the browser sends along with every request.
  if (status === 431) {
    return `请求头过大，通常是浏览器为本站保存的 Cookie 过多：请在浏览器中清除本站的 Cookie 后刷新本页重试${more}`;
  }
  // A body the server does not take as sent: a gateway or proxy that compressed or retyped it.
  if (status === 415) {
    return `服务器不接受请求内容的格式，可能是网关或代理改动（如压缩）了请求，请联系系统管理员${more}`;
  }
  if (err.code === "model_not_loaded") return "服务器正在加载模型，请稍后重试";
  if (atCommit(data)) return unconfirmed({ reason: "反馈数据库在保存的最后一步中断" });
  if (err.code === "database_unavailable") {
    const when = retryAfter ? `请在 ${waitText(retryAfter)}后` : "请稍后";
    return `反馈数据库暂时不可用，${when}重新保存（分派建议不受影响）`;
  }
  // Retrying does not help until the database or this server is upgraded.
  if (err.code === "database_schema_mismatch") {
    return "反馈数据库的版本与本服务器不一致，重试无效，请联系系统管理员升级（分派建议不受影响）";
  }
  // When to try again, said plainly: the wait a Retry-After asked for (the page sends nothing
  // before then), or else now, and in a few minutes if that fails too. 请稍后重试 said no when.
  const when = retryAfter
    ? `请在 ${waitText(retryAfter)}后重试`
    : "可以马上重试一次；仍然出错时，请等几分钟再试";
  if (err.code === "internal_error") return `服务器内部错误（已记入服务器日志），${when}`;
  if (status === 502 || status === 503 || status === 504) {
    return `服务器暂时不可用（${status}），${when}${more}`;
  }
  // Another 5xx (a gateway's own HTML page, a 500 with nothing of the API's): nothing the
  // dispatcher did; retrying may help, and an administrator can find out why.
  if (status >= 500) {
    return `服务器出错（HTTP ${status}），${when}（已填写的内容仍保留）；如果反复出现，请告知系统管理员${more}`;
  }
  return `服务器返回错误 ${status}${more}`;
}

// -- length limits ---------------------------------------------------------------------------------

// Characters as the server counts them: code points, not UTF-16 units (an emoji is one).
function charCount(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// The first input over the server's limit and the warning for it, or null.
function overLimit() {
  const inputs = [
    [textInput, "诉求描述", textInput.value, state.limits.text],
    [titleInput, "标题", titleInput.value.trim(), state.limits.title], // sent trimmed
  ];
  for (const [input, name, value, limit] of inputs) {
    const n = charCount(value);
    if (n > limit) {
      const fmt = (x) => x.toLocaleString("zh-CN");
      const message = `${name}共 ${fmt(n)} 字，超过上限 ${fmt(limit)} 字，请删减 ${fmt(n - limit)} 字后再分派。`;
      return { input, message };
    }
  }
  return null;
}

// Shown as soon as an input goes over its limit, and gone once it is back under it.
function checkLimits() {
  const over = overLimit();
  for (const input of [textInput, titleInput]) {
    input.setAttribute("aria-invalid", String(over !== null && over.input === input));
  }
  if (over) setStatus($("route-status"), over.message, "error");
  else if (state.limitWarning) setStatus($("route-status"), "");
  state.limitWarning = over !== null;
  return over;
}

// -- model labels (for the searchable lists) --------------------------------------------------------

function labelsFromModel(info) {
  // GET /v1/model: {"labels": {"department": [...], "category": [...]}, ...}; tolerate
  // {"heads": {"department": {"labels": [...]}}} too.
  const out = { department: [], category: [] };
  for (const head of HEADS) {
    const fromLabels = info && info.labels && info.labels[head];
    const fromHeads = info && info.heads && info.heads[head] && info.heads[head].labels;
    const list = Array.isArray(fromLabels) ? fromLabels : Array.isArray(fromHeads) ? fromHeads : [];
    out[head] = list.map(String);
  }
  return out;
}

// The version whose labels the lists hold: a /v1/route answer from another model (a promote, the
// nightly retrain or an admin reload switched it while the page stayed open) reloads them.
let loadedVersion = null;
// Seconds between tries while the server cannot give the model's labels, one after another, then
// the last again: a page opened (from the browser's cache, a tab reloaded) while the server was
// down said so once, in words for a failed route, and never tried again.
const MODEL_RETRY_S = [2, 4, 8, 15, 30];
const modelLoad = { seq: 0, tries: 0, timer: null };

// What the header says while the model's labels cannot be had, and tries again.
function serverDownText(e) {
  const again = "正在自动重试…";
  if (e.status === undefined && e.outcomeUnknown) return `无法连接服务器，${again}`; // no answer
  if (e.status === 502 || e.status === 504) return `无法连接服务器（HTTP ${e.status}），${again}`;
  if (e.code === "model_not_loaded") return `服务器正在加载模型，${again}`;
  if (e.status === 429) {
    return `请求过于频繁，${e.retryAfter ? `${waitText(e.retryAfter)}后自动重试…` : again}`;
  }
  if (e.status) return `服务器暂时不可用（HTTP ${e.status}），${again}`;
  return `${e.message}；${again}`; // an answer not the API's (a login gateway's page)
}

// A route or a save that found no server (no answer, a gateway's 502 or 504): the header, which
// went on naming the model as served, says it cannot be reached and asks again until it answers,
// so that the dispatcher sees when it is back. Not while it is asking already.
function serverLost(url) {
  if (url !== "v1/model" && modelLoad.tries === 0) loadModel();
}

function showModelState(text, down) {
  $("model-version").textContent = text;
  $("model-version").classList.toggle("server-down", down);
}

async function loadModel() {
  // One load at a time: a newer one (a route's answer from another model, the page shown again)
  // supersedes a try still running or waiting.
  const seq = ++modelLoad.seq;
  clearTimeout(modelLoad.timer);
  if (!$("model-version").textContent) showModelState("正在连接服务器…", false);
  let info;
  try {
    info = await api("GET", "v1/model");
  } catch (e) {
    if (seq !== modelLoad.seq) return;
    showModelState(serverDownText(e), true);
    // Never before the server said (Retry-After, of a 429 or a 503).
    const wait = Math.max(
      MODEL_RETRY_S[Math.min(modelLoad.tries, MODEL_RETRY_S.length - 1)],
      e.retryAfter || 0,
    );
    modelLoad.tries += 1;
    modelLoad.timer = setTimeout(loadModel, wait * 1000);
    return;
  }
  if (seq !== modelLoad.seq) return;
  modelLoad.tries = 0;
  try {
    loadedVersion = (info && info.version) || null;
    state.labels = labelsFromModel(info);
    // The departments a joint dispatch may add: one only ever a co-department in the history is
    // none of the head's labels (a server before co_departments: the labels).
    const coChoices = Array.isArray(info && info.co_departments)
      ? info.co_departments
      : state.labels.department;
    setChildren($("co-add"),
      el("option", { value: "" }, "＋ 加入会办部门…"),
      ...coChoices.map((d) => el("option", { value: d }, d)),
    );
    showModelState(info && info.version ? `模型 ${info.version}` : "", false);
    // A category-only model: the legend and the footer speak of no department.
    const departments = Boolean(info && info.labels && info.labels.department);
    for (const node of document.querySelectorAll('[data-head="department"]')) {
      node.hidden = !departments;
    }
    const limits = (info && info.limits) || {};
    if (Number.isInteger(limits.max_text_chars)) state.limits.text = limits.max_text_chars;
    if (Number.isInteger(limits.max_title_chars)) state.limits.title = limits.max_title_chars;
    state.limits.departments = Number.isInteger(limits.max_departments_chars)
      ? limits.max_departments_chars
      : null;
    state.limits.label = Number.isInteger(limits.max_label_chars) ? limits.max_label_chars : null;
    checkLimits();
    if (state.suggestion) renderChoice();
  } catch (e) {
    // The server answered; this browser could not use it (asking again would not help).
    showModelState(`无法显示模型信息（${e.message}）；请刷新页面，或用新版 Chrome、Edge、Firefox 打开本页`, true);
  }
}

// -- routing -----------------------------------------------------------------------------------------

// The advice shown goes as soon as another ticket is routed (or the form is cleared): were the
// routing to fail, it could otherwise be adopted for the ticket now in the form.
// `again`: the same ticket is routed again, as the failure says to do before saving it again.
function dropResult(again = false) {
  const f = state.failed;
  if (f && f.suggestion === state.suggestion && !again) {
    reportUnsaved(f.ticketId, f.read, f.chosen, f.reason, f.outcomeUnknown);
  }
  state.failed = null;
  state.request = null;
  state.suggestion = null;
  state.cleared = null;
  $("result").hidden = true;
  $("evidence").hidden = true;
  confirmButton.disabled = true;
  setStatus($("feedback-status"), "");
  announce(""); // the next advice is said anew, even when it is the same
}

// Ends the route running, if any: its answer is for a ticket no longer in the form, and a busy
// server need not work on it (the server drops a ticket whose client has gone).
function cancelRoute() {
  state.routeSeq++;
  if (state.routeAbort) state.routeAbort.abort();
  state.routeAbort = null;
  state.routeText = null;
  state.held = null; // pressed for that route's advice
}

// -- an input method's composition ------------------------------------------------------------------

// The field a Chinese input method is composing in (compositionstart to compositionend), and where
// the focus goes once it ends: {suggestion, request, target} of an advice that came in meanwhile.
const composition = { field: null, then: null };
document.addEventListener("compositionstart", (e) => {
  composition.field = e.target;
}, true);
document.addEventListener("compositionend", (e) => {
  const { then } = composition;
  composition.field = null;
  composition.then = null;
  if (!then) return;
  // After the composition's last input event, which some browsers fire after compositionend.
  setTimeout(() => {
    const typed =
      textInput.value !== then.request.text || titleInput.value.trim() !== then.request.title;
    if (state.suggestion === then.suggestion && !typed && document.activeElement === e.target) {
      focusUnderAdvice(then.target);
    }
  }, 0);
}, true);

// -- number keys pressed before the advice is in ----------------------------------------------------
// The focus stays in 诉求描述 while a slow route runs: 「2」 pressed for candidate 2 before the advice
// appeared went into the complaint, and the save was refused (诉求内容或标题在分派后已改动). Such a
// key, pressed before anything else is typed, is held: once the advice is in it picks its candidate
// as it would have then. Typing on after it (「2号楼」) makes the held keys text, where they were
// pressed; Backspace takes the last one back. Nothing typed is lost, nor a shortcut made text.

// Enter pressed there likewise, to adopt an advice not yet in: it added a line break to the
// complaint, and the Enter that followed was refused the same way. Held, it never adopts the advice
// unseen: once it is in, the focus on 采纳建议 waits for the next Enter.

function keyName(k) {
  return `${k.head === "category" ? "Shift+" : ""}${k.n}`;
}

function showHeld() {
  const held = state.held;
  if (!held || !held.keys.length) {
    state.held = null;
    setStatus($("route-status"), "正在分析…", "busy");
    return;
  }
  const picks = held.keys
    .filter((k) => k.n)
    .map((k) => `${k.head === "category" ? "类别" : "部门"}候选 ${k.n}`)
    .join("、");
  const then = picks ? `建议出来后选${picks}` : "建议出来后请再按 Enter 采纳";
  setStatus($("route-status"), `正在分析…（${then}；接着打字则按键作为文字输入）`, "busy");
}

// Whether keydown `e` is a candidate key held for the advice on its way (and so not typed).
function holdKey(e, inText) {
  if (state.routeAbort === null || isComposing(e) || e.ctrlKey || e.metaKey || e.altKey) return false;
  const m = /^(?:Digit|Numpad)([1-5])$/.exec(e.code);
  const enter = inText && e.key === "Enter" && !e.shiftKey;
  if ((!m && !enter) || (inText && textInput.value !== state.routeText)) return false; // typed into since
  if (!state.held) {
    const at = inText ? [textInput.selectionStart, textInput.selectionEnd] : [null, null];
    state.held = { keys: [], start: at[0], end: at[1] };
  }
  if (enter) state.held.keys.push({ head: null, n: null, char: "\n" });
  else {
    const head = e.shiftKey ? "category" : "department";
    state.held.keys.push({ head, n: Number(m[1]), char: inText && e.key.length === 1 ? e.key : "" });
  }
  e.preventDefault();
  showHeld();
  return true;
}

// What a key other than a held one does to 诉求描述, as a beforeinput's inputType, or null for a key
// that changes no text (an arrow, Shift). Handled at keydown: text set in beforeinput left
// Chromium's caret behind what it then typed (「2号楼」 became 「2楼号」).
function editOf(e) {
  if (isComposing(e)) return "insertCompositionText";
  if (e.ctrlKey || e.metaKey) return /^[vxzy]$/i.test(e.key) ? "insertFromPaste" : null;
  if (e.key === "Backspace") return "deleteContentBackward";
  if (e.key === "Delete") return "deleteContentForward";
  return e.key.length === 1 || e.key === "Enter" ? "insertText" : null;
}

// Before anything else changes 诉求描述: the keys held become text where they were pressed, or go
// with what is deleted. `e`: a keydown (editOf) or, for an edit without a key (a paste from the
// menu, a drop), a beforeinput.
function releaseHeld(e) {
  const held = state.held;
  if (!held || held.start === null) return;
  const inputType = e.type === "keydown" ? editOf(e) : e.inputType;
  if (!inputType) return;
  const { selectionStart: from, selectionEnd: to } = textInput;
  const atHeld = from === to && from === held.end;
  if (inputType === "deleteContentBackward" && atHeld && held.start === held.end) {
    e.preventDefault(); // Backspace: the last key held is taken back
    held.keys.pop();
    showHeld();
    return;
  }
  state.held = null;
  showHeld();
  if (from < to && from <= held.start && held.end <= to) {
    return; // replaced or deleted with the selection (Ctrl+A, then the next ticket pasted)
  }
  const text = held.keys.map((k) => k.char).join("");
  textInput.setRangeText(text, held.start, held.end, atHeld ? "end" : "preserve");
  // Text inserted without a key (an input method's commit, a paste from the menu): inserted here,
  // after the keys held, as Chromium would leave its caret before it.
  const data = e.type === "beforeinput" && e.cancelable && inputType.startsWith("insert")
    ? e.data ?? (e.dataTransfer && e.dataTransfer.getData("text/plain"))
    : null;
  if (typeof data === "string") {
    e.preventDefault();
    textInput.setRangeText(data, textInput.selectionStart, textInput.selectionEnd, "end");
    textInput.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

// The keys held, pressed now the advice is in.
function pickHeld(suggestion) {
  const held = state.held;
  state.held = null;
  for (const { head, n } of (held && held.keys) || []) {
    const c = head && suggestion[head] && (suggestion[head].candidates || [])[n - 1];
    if (c) choose(head, c.label);
  }
}

async function route() {
  dropResult(state.request !== null && formHolds(state.request.id, state.request));
  // First thing: a route refused below supersedes one still running, whose answer is for a text no
  // longer there.
  cancelRoute();
  const seq = state.routeSeq;
  routeButton.disabled = false;
  const text = textInput.value;
  if (!text.trim()) {
    setStatus($("route-status"), "请先输入诉求内容。", "error");
    textInput.focus();
    return;
  }
  const over = checkLimits();
  if (over) {
    over.input.focus();
    return;
  }
  const request = { id: idInput.value.trim() || null, title: titleInput.value.trim(), text };
  // masked: the ticket as typed with its personal data masked, as the model read it masked, is
  // what the page shows of it (判断依据, the unsaved notice); never the text unmasked (issue #2).
  const body = { text, top_k: TOP_K, masked: true };
  if (request.id) body.id = request.id;
  if (request.title) body.title = request.title;

  const focused = document.activeElement === routeButton; // 分派建议 clicked, or Enter on it
  routeButton.disabled = true;
  setStatus($("route-status"), "正在分析…", "busy");
  const controller = new AbortController();
  state.routeAbort = controller;
  state.routeText = text;
  try {
    const ask = () => api("POST", "v1/route", body, controller.signal);
    let suggestion;
    try {
      suggestion = await ask();
    } catch (e) {
      // A server from before `masked` (met during a rolling upgrade: its body takes no key it does
      // not know) refuses it with a 422 naming it: asked once more without it. Its answer has no
      // masked text, so the ticket is not shown (renderEvidence), never as typed.
      if (!(e.status === 422 && e.fields.includes("masked"))) throw e;
      delete body.masked;
      suggestion = await ask();
    }
    if (seq !== state.routeSeq) return; // a newer request is on its way
    const heads = HEADS.map((h) => suggestion[h]).filter((r) => r !== null && r !== undefined);
    if (!heads.length || heads.some((r) => typeof r !== "object" || typeof r.label !== "string")) {
      throw new Error(unrecognised());
    }
    state.request = request;
    state.suggestion = suggestion;
    state.savedKey = null;
    setStatus($("route-status"), "");
    setStatus($("feedback-status"), "");
    try {
      render(suggestion);
    } catch (e) {
      // A half-drawn advice must not be adoptable (1, Enter stored a "correction" without category).
      dropResult();
      throw new Error(`无法显示分派建议（${e.message}）；请刷新页面，或用新版 Chrome、Edge、Firefox 打开本页`);
    }
    // An advice that cannot be saved as it is (a name or a joint list over the server's limits)
    // leaves 采纳建议 disabled, which takes no focus: the focus stayed in 诉求描述, where the number
    // keys that pick another candidate typed digits into the complaint.
    const first = document.querySelector(".head:not([hidden]) .candidate");
    const target = confirmButton.disabled && first ? first : confirmButton;
    // Not in the middle of an input method's composition (补充 begun while 正在分析…): the focus
    // taken from it cut the composition short, and the IME's next key (2 for its second candidate,
    // Space, Enter) went to 采纳建议 as a shortcut. Moved once the composition ends, if nothing
    // was typed with it; otherwise the dispatcher is typing on, and the focus stays.
    if (composition.field && composition.field === document.activeElement) {
      composition.then = { suggestion, request, target };
    } else focusUnderAdvice(target);
    announce(adviceText(suggestion));
    if (state.held && textInput.value === text) pickHeld(suggestion);
    if (suggestion.model_version && suggestion.model_version !== loadedVersion) loadModel();
  } catch (e) {
    if (seq === state.routeSeq) {
      const keys = state.held ? state.held.keys : [];
      const held = keys.filter((k) => k.n).map(keyName).join("、");
      // An Enter held to adopt the advice saved nothing: said, or the dispatcher, who pressed it
      // to save, goes on to the next ticket with this one undecided.
      const enter = keys.some((k) => !k.n);
      const unused =
        (held ? `；按下的 ${held} 没有选择候选` : "") +
        (enter ? "；按下的 Enter 没有保存派单（分派失败，没有可采纳的建议）" : "");
      setStatus($("route-status"), `分派失败：${e.message}${unused}`, "error");
    }
  } finally {
    if (seq === state.routeSeq) {
      state.routeAbort = null;
      state.routeText = null;
      state.held = null;
      routeButton.disabled = false;
      // A failed route leaves the focus on 分派建议, so that Enter tries again.
      if (focused && focusLost()) routeButton.focus();
    }
  }
}

// Focuses `target` (in the advice), scrolled into view with as much of the advice above it as the
// window holds. Chrome scrolls a focused button from out of view to the middle of the window: at
// 1024 x 768 the suggested department, its confidence and 人工复核 went above the top edge, and the
// similar tickets below filled the screen.
function focusUnderAdvice(target) {
  target.focus({ preventScroll: true });
  const margin = 8; // px between the button and the window's edge
  const box = target.getBoundingClientRect();
  const top = $("result").getBoundingClientRect().top;
  const least = box.bottom + margin - window.innerHeight; // the button's bottom in view
  const most = box.top - margin; // its top too
  window.scrollBy(0, Math.min(Math.max(least, Math.min(0, top)), most));
}

// The advice's own decision, or, from an answer without one, auto only when every head's is.
function overallDecision(s) {
  const heads = HEADS.map((h) => s[h]).filter(Boolean);
  const auto = heads.length > 0 && heads.every((h) => h.decision === "auto");
  return s.decision || (auto ? "auto" : "review");
}

// The advice in one line, for a screen reader: 分派建议：A（置信度 81%）/ B（置信度 64%），人工复核；会办建议：C
function adviceText(s) {
  const heads = HEADS.map((h) => s[h]).filter(Boolean);
  const labels = heads.map((r) => `${r.label}（置信度 ${shownScores(r).score}）`).join(" / ");
  const co = advisedCo(s);
  const decision = DECISION_TEXT[overallDecision(s)] || "";
  return `分派建议：${labels}${decision ? `，${decision}` : ""}${co.length ? `；会办建议：${co.join("、")}` : ""}`;
}

// The choice in one line, said when a key, a toggle or a list changes it.
function announceChoice() {
  const co = chosenCo();
  const department = state.choice.department
    && (co.length ? `${state.choice.department}（会办：${co.join("、")}）` : state.choice.department);
  const chosen = [department, state.choice.category].filter(Boolean).join(" / ");
  announce(`最终派单：${chosen}${isCorrection() ? "（已更正）" : "（采纳建议）"}`);
}

function render(s) {
  $("result").hidden = false;
  setBadge($("overall-badge"), overallDecision(s));
  $("elapsed").textContent = typeof s.elapsed_ms === "number" ? `${s.elapsed_ms.toFixed(1)} 毫秒` : "";
  for (const head of HEADS) {
    renderHead(head, s[head]);
    state.choice[head] = s[head] ? s[head].label : null;
  }
  state.co = advisedCo(s);
  state.coShown = advisedCo(s);
  $("co").hidden = !s.department; // a category-only model has no department to add others to
  renderCoDepartments();
  renderEvidence(s);
  renderSimilar(s.similar || []);
  renderChoice();
}

function advisedCo(s) {
  return (s.co_departments || []).map((d) => d.label);
}

// The advice as toggles, all on at first: adopting the suggestion adopts the joint dispatch. A
// department the dispatcher adds (the list under them) joins them, on.
function renderCoDepartments() {
  const advised = new Map((state.suggestion.co_departments || []).map((d) => [d.label, d]));
  const node = $("co-departments");
  node.hidden = state.coShown.length === 0;
  setChildren(node,
    "会办建议：",
    ...state.coShown.map((label) => {
      const d = advised.get(label);
      const b = el("button", {
        type: "button",
        class: "tag department co",
        title: d ? `相似工单 ${d.tickets.join("、")}；点击取消或加入会办` : "人工加入；点击取消或加入会办",
        "aria-pressed": String(state.co.includes(label)),
        dataset: { label },
      }, d ? `${label}（${d.tickets.length} 件相似工单）` : `${label}（人工加入）`);
      b.addEventListener("click", () => toggleCo(label));
      return b;
    }),
  );
}

function addCo(label) {
  if (!state.suggestion || !label) return;
  if (nameOverLimit(label)) {
    showCoLimit(`${nameLimitText("会办部门", label)}，未加入。`);
    return;
  }
  if (label === state.choice.department) {
    // The lead itself: it showed a struck-through 「（人工加入）」 toggle that did nothing, until a
    // change of lead made it a co-department unseen.
    setStatus($("feedback-status"), `${label} 已是主办部门，无需加入会办。`);
    return;
  }
  // Refused as it is chosen, beside the list, when the list would go over the server's limit: the
  // save was sent, and its 422 was the first word of it.
  const limit = state.limits.departments;
  const n = charCount([state.choice.department, ...chosenCo(), label].filter(Boolean).join("；"));
  if (limit !== null && !chosenCo().includes(label) && n > limit) {
    showCoLimit(`${coLimitText(limit)}，加入${label}后为 ${n.toLocaleString("zh-CN")} 字，未加入。`);
    return;
  }
  if (!state.coShown.includes(label)) state.coShown = [...state.coShown, label];
  if (!state.co.includes(label)) state.co = [...state.co, label];
  renderCoDepartments();
  renderChoice();
  announceChoice();
  confirmButton.focus(); // as choose(): Enter confirms the changed decision
}

function toggleCo(label) {
  state.co = state.co.includes(label) ? state.co.filter((d) => d !== label) : [...state.co, label];
  renderChoice();
  announceChoice();
  confirmButton.focus(); // Enter confirms; left on the toggle it would switch it back
}

// A department's or category's name over the server's limit for one (max_label_chars, checked by
// POST /v1/feedback): its length, or 0 when within it or there is no limit.
function nameOverLimit(label) {
  const limit = state.limits.label;
  const n = charCount(label || "");
  return limit !== null && n > limit ? n : 0;
}

// The first `n` characters of a text for a message, "…" when cut; a cut inside a mask's placeholder
// ([手机 of [手机号], a text masked by the server) goes on to its "]", so that none is shown halved.
function quoteStart(text, n) {
  const chars = [...text];
  if (chars.length <= n) {
    return text;
  }
  let end = n;
  const open = chars.lastIndexOf("[", end - 1);
  if (open >= 0 && chars.lastIndexOf("]", end - 1) < open) {
    const close = chars.indexOf("]", end);
    if (close >= 0 && close - open <= 8) {
      end = close + 1; // the longest placeholder, [身份证号], is 6 characters
    }
  }
  return end < chars.length ? `${chars.slice(0, end).join("")}…` : text;
}

// "部门名称“…”共 120 字，服务器只能保存 100 字以内的名称，请另选": the name quoted cut, as it may be long.
function nameLimitText(kind, label) {
  const chars = [...label];
  const shown = quoteStart(label, 20);
  const fmt = (x) => x.toLocaleString("zh-CN");
  return `${kind}名称“${shown}”共 ${fmt(chars.length)} 字，服务器只能保存 ${fmt(state.limits.label)} 字以内的名称，请另选`;
}

// The first name of the choice over the server's limit (the advice itself may name one), as
// [kind, name], or null.
function choiceNameOverLimit() {
  const names = [
    ["部门", state.choice.department],
    ...chosenCo().map((d) => ["会办部门", d]),
    ["类别", state.choice.category],
  ];
  return names.find(([, name]) => name && nameOverLimit(name)) || null;
}

function coLimitText(limit) {
  return `会办部门合计不能超过 ${limit.toLocaleString("zh-CN")} 字（含主办部门和分隔符“；”）`;
}

function showCoLimit(text) {
  setStatus($("co-limit"), text, "error co-limit");
  $("co-limit").hidden = !text;
}

// The department list over the server's limit (a 会办 toggled on, another lead chosen, the advice
// itself): its length, or 0 when within it or there is no limit.
function coOverLimit() {
  const limit = state.limits.departments;
  const n = charCount(chosenDepartment() || "");
  return limit !== null && n > limit ? n : 0;
}

// The co-departments that go with the chosen department (never the chosen one itself).
function chosenCo() {
  return state.co.filter((d) => d !== state.choice.department);
}

function setBadge(node, decision) {
  node.textContent = DECISION_TEXT[decision] || "";
  node.className = `badge ${decision}`;
}

function renderHead(head, r) {
  const card = $(`head-${head}`);
  card.hidden = !r;
  if (!r) return;
  setBadge(card.querySelector(".badge"), r.decision);
  card.querySelector(".top-label").textContent = r.label;
  const shown = shownScores(r);
  card.querySelector(".top-score").textContent = `置信度 ${shown.score}`;
  const fill = card.querySelector(".fill");
  fill.style.width = pct(r.score); // CSSOM, allowed by the CSP (no inline style attribute)
  fill.className = `fill ${r.decision}`;
  const mark = card.querySelector(".threshold");
  mark.hidden = typeof r.threshold !== "number" || neverAuto(r); // no mark at the bar's end
  if (typeof r.threshold === "number") {
    mark.style.left = pct(r.threshold);
    mark.title = `自动派单阈值 ${shown.threshold}`;
  }
  const reason = REASON_TEXT[r.reason];
  // A dispatch rule gave the label: say which, as the reason the suggestion is what it is. A
  // keyword of alternatives (燃气|煤气) reads 燃气或煤气.
  const keywords = r.rule ? r.rule.keywords.map((k) => k.split("|").join("或")).join("、") : "";
  const rule = r.rule
    ? `按派单规则派出（关键词：${keywords}${r.rule.note ? `；${r.rule.note}` : ""}）`
    : "";
  // The head ranks with its label prior shifted towards the labels with few past tickets, but
  // shows each label's own confidence, so a suggestion may read 26% above a candidate at 51%:
  // say why, or the list reads as a mistake.
  const shifted =
    !r.rule &&
    (r.candidates || []).slice(0, TOP_K).some((c) => c.label !== r.label && c.score > r.score);
  const shiftedText = shifted
    ? `已向历史工单较少的${head === "department" ? "部门" : "类别"}校正排序，下方有置信度更高的候选`
    : "";
  const reasonLine = card.querySelector(".reason");
  reasonLine.textContent = [rule, reason ? reason(r, head) : "", shiftedText]
    .filter(Boolean)
    .join("，");
  reasonLine.title =
    r.reason === "below_threshold" && neverAuto(r)
      ? NEVER_AUTO_WHY
      : r.reason === "no_known_terms"
        ? NO_TERMS_WHY
        : "";

  const list = card.querySelector(".candidates");
  setChildren(list,
    ...(r.candidates || []).slice(0, TOP_K).map((c, i) => {
      const bar = el("span", { class: "mini-bar" }, el("span", { class: "mini-fill" }));
      bar.firstChild.style.width = pct(c.score);
      const button = el(
        "button",
        // A long name takes a second line in a narrow row (a long department, 200 % zoom, a
        // phone); the tooltip names it too.
        {
          type: "button",
          class: "candidate",
          title: c.label,
          dataset: { label: c.label },
          "aria-pressed": "false",
        },
        el("kbd", {}, String(i + 1)),
        el("span", { class: "cand-label" }, c.label),
        bar,
        // The suggestion's own row reads as the card above it.
        el("span", { class: "cand-score" }, c.label === r.label ? shown.score : pct(c.score)),
      );
      button.addEventListener("click", () => choose(head, c.label));
      return el("li", {}, button);
    }),
  );
  const terms = (r.evidence || []).map((e) => e.term);
  card.querySelector(".terms").textContent = terms.length ? `依据：${terms.join("、")}` : "";
  // What the label's score came from beside the words: the latent view (主题) and the category
  // head's probabilities, naming the category that gave most. Only for a head that reads them.
  const sources = card.querySelector(".sources");
  const line = sourcesLine(r.sources);
  // What the figures are, in the tooltip and, for a screen reader (which reads no paragraph's
  // title), in unseen text after them: at 1024 x 768 a line more pushed 采纳建议 out of view.
  const legend = el("span", { class: "visually-hidden" }, `（${SOURCES_LEGEND}）`);
  setChildren(sources, ...(line ? [line, legend] : []));
  sources.title = line ? SOURCES_LEGEND : "";
  sources.hidden = !line;
  // The clause of the label's 权责清单 (or 分类目录) entry that names the evidence, when the model
  // was trained with one (paidan train --remits): the authority behind the suggestion.
  const remit = card.querySelector(".remit");
  remit.textContent = r.remit ? `职责依据：${r.remit}` : "";
  remit.hidden = !r.remit;
  resetPicker(head);
}

const SOURCE_TEXT = { words: () => "词语", latent: () => "主题", category: (s) => `类别“${s.label}”` };
// The 得分来源 line's figures, explained: shares of a linear score, in no unit a dispatcher knows,
// read as percentages or as the confidence.
const SOURCES_LEGEND =
  "得分来源：数值是各部分为该部门的评分加了多少分，越大影响越大，负数表示不利于该部门；" +
  "不是置信度，也不是百分比。词语：诉求中的词语；主题：诉求整体所属的主题；" +
  "类别：模型对问题类别的判断，引号内为加分最多的类别。本行只在词语不是主要来源时显示。";

// 「得分来源：类别“环境保护” 0.41 · 词语 0.35 · 主题 0.12」: each input's share of the label's linear
// score, largest first, the intercept left out (it is the same whatever the ticket). Shown only
// when something other than the words gave most of it, where the evidence words alone would not
// explain the label; otherwise "" (one more line would push the advice or 采纳建议 out of a
// 1024×768 window).
function sourcesLine(sources) {
  const kept = (Array.isArray(sources) ? sources : [])
    .filter((s) => SOURCE_TEXT[s.input] && typeof s.weight === "number")
    .sort((a, b) => b.weight - a.weight);
  if (!kept.length || kept[0].input === "words") return "";
  return `得分来源：${kept.map((s) => `${SOURCE_TEXT[s.input](s)} ${s.weight.toFixed(2)}`).join(" · ")}`;
}

// Highlight evidence terms in the complaint as typed, personal data masked (the answer's `masked`),
// never unmasked: phone and ID numbers are not shown (issue #2). An answer without it
// (a server from before it) shows no text at all.
function renderEvidence(s) {
  const read = s.masked && typeof s.masked.text === "string" ? s.masked : null;
  const title = (read && read.title) || "";
  setChildren($("evidence-title"), ...highlight(title, s));
  $("evidence-title").hidden = !title;
  setChildren($("evidence-text"), ...highlight(read ? read.text : "", s));
  $("evidence").hidden = !read;
}

// Text nodes and <mark> elements showing `text` with the evidence terms of both heads marked.
function highlight(text, s) {
  const norm = [];
  const origin = []; // origin[i] = [start, end) in `text` of normalised code unit i
  // The evidence is in the script the model reads: a traditional character is matched as the
  // simplified one the answer says the model read (燒烤店 as 烧烤店); marked as typed.
  const simplified = (s && s.simplified) || {};
  let pos = 0;
  for (const ch of text) {
    const n = [...ch.normalize("NFKC").toLowerCase()]
      .map((c) => (Object.prototype.hasOwnProperty.call(simplified, c) ? simplified[c] : c))
      .join("");
    for (let k = 0; k < n.length; k++) origin.push([pos, pos + ch.length]);
    norm.push(n);
    pos += ch.length;
  }
  const normText = norm.join("");
  const marks = new Array(text.length).fill(0); // bit 1: department, bit 2: category
  const termsAt = new Array(text.length).fill(null); // the evidence terms covering each character
  HEADS.forEach((head, bit) => {
    const r = s[head];
    if (!r) return;
    for (const { term } of r.evidence || []) {
      const t = String(term).normalize("NFKC").toLowerCase().trim();
      if (!t) continue;
      for (let at = normText.indexOf(t); at !== -1; at = normText.indexOf(t, at + t.length)) {
        const start = origin[at][0];
        const end = origin[at + t.length - 1][1];
        for (let i = start; i < end; i++) {
          marks[i] |= 1 << bit;
          (termsAt[i] = termsAt[i] || new Set()).add(String(term));
        }
      }
    }
  });
  // One text node or <mark> per run of characters with the same highlight.
  const out = [];
  let i = 0;
  while (i < text.length) {
    let j = i + 1;
    while (j < text.length && marks[j] === marks[i]) j++;
    const piece = text.slice(i, j);
    if (marks[i] === 0) out.push(document.createTextNode(piece));
    else {
      const cls = ["ev"];
      if (marks[i] & 1) cls.push("ev-department");
      if (marks[i] & 2) cls.push("ev-category");
      const terms = new Set();
      for (let k = i; k < j; k++) for (const t of termsAt[k]) terms.add(t);
      out.push(el("mark", { class: cls.join(" "), title: `依据：${[...terms].join("、")}` }, piece));
    }
    i = j;
  }
  return out;
}

// A past ticket by its title and the start of its text (`snippet`, masked by the server). Many
// phone tickets have no title: their snippet stands in its place. Models trained before snippets
// send null, and a ticket with neither reads （无标题）.
function renderSimilar(similar) {
  const items = similar.slice(0, 5).map((t) =>
    el(
      "li",
      {},
      el("span", { class: "sim-title" }, t.title || t.snippet || "（无标题）"),
      el("span", { class: "tags" },
        t.department ? el("span", { class: "tag department" }, t.department) : null,
        ...(t.co_departments || []).map((d) =>
          el("span", { class: "tag department co", title: "会办" }, `会办 ${d}`)),
        t.category ? el("span", { class: "tag category" }, t.category) : null,
      ),
      t.title && t.snippet ? el("span", { class: "sim-snippet" }, t.snippet) : null,
      el("span", { class: "muted sim-meta" },
        `相似度 ${pct(t.similarity)}`, t.id ? ` · ${t.id}` : ""),
    ),
  );
  setChildren($("similar-list"), ...items);
  $("similar-empty").hidden = items.length > 0;
}

// -- the decision ----------------------------------------------------------------------------------

function choose(head, label) {
  if (!state.suggestion || !state.suggestion[head]) return;
  if (nameOverLimit(label)) {
    // Refused as it is chosen (typed into 搜索其他部门, a candidate): sent, the save's 422 was the
    // first word of it.
    const kind = head === "department" ? "部门" : "类别";
    setStatus($("feedback-status"), `${nameLimitText(kind, label)}。`, "error");
    return;
  }
  state.choice[head] = label;
  renderChoice();
  announceChoice();
  confirmButton.focus();
}

function isCorrection() {
  const s = state.suggestion;
  const advised = advisedCo(s).filter((d) => d !== state.choice.department);
  const co = chosenCo();
  return HEADS.some((h) => s[h] && state.choice[h] !== s[h].label)
    || co.length !== advised.length || co.some((d) => !advised.includes(d));
}

// A random id for one decision. crypto.randomUUID exists only on HTTPS (or localhost) pages and in
// browsers from 2021 on; crypto.getRandomValues on every page and browser the page supports.
function newRequestId() {
  const c = window.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // a version 4 UUID
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => (b < 16 ? "0" : "") + b.toString(16)).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

// A ticket id as the server compares ids (docs/api.md, "Ticket ids"): NFKC, without invisible format
// characters, trimmed, so ２０２６１２０６００１ typed after routing 20261206001 is the routed ticket.
function idKey(id) {
  return id === null ? null : id.replace(/\p{Cf}/gu, "").normalize("NFKC").trim() || null;
}

// The ticket and decision a save body stores, and the request_id it is sent with: the same for
// every attempt at that decision until one succeeds, as long as no other decision was sent for the
// ticket meanwhile. Going back to a decision after another was sent is a new save with a new id:
// with the old one, when its first save was stored but its answer lost, the server stored nothing
// and answered that first row, older than the other decision's, which retraining (the latest row
// of a ticket wins) then took for the dispatcher's final word.
function requestIdOf(body) {
  const ticket = JSON.stringify([idKey(body.ticket_id), body.title, body.text]);
  const decision = JSON.stringify([body.department, body.category, body.dispatcher_id]);
  const pending = state.requestIds.get(ticket);
  if (pending && pending.decision === decision) return { ticket, id: pending.id };
  const id = newRequestId();
  state.requestIds.delete(ticket); // re-inserted last: the oldest ticket goes first below
  state.requestIds.set(ticket, { decision, id });
  if (state.requestIds.size > 100) state.requestIds.delete(state.requestIds.keys().next().value);
  return { ticket, id };
}

function choiceKey() {
  return JSON.stringify([state.suggestion && state.suggestion.model_version, state.choice, chosenCo()]);
}

// The department as stored: a joint dispatch names the lead first, the others after it.
function chosenDepartment() {
  const d = state.choice.department;
  return d ? [d, ...chosenCo()].join("；") : d;
}

function renderChoice() {
  const s = state.suggestion;
  for (const head of HEADS) {
    $(`choice-${head}`).textContent = state.choice[head] || "—";
    for (const b of $(`head-${head}`).querySelectorAll(".candidate")) {
      b.setAttribute("aria-pressed", String(b.dataset.label === state.choice[head]));
    }
  }
  const co = chosenCo();
  $("choice-co").textContent = co.length ? `（会办：${co.join("、")}）` : "";
  for (const b of $("co-departments").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(co.includes(b.dataset.label)));
  }
  const corrected = isCorrection();
  $("choice-note").textContent = corrected ? "（已更正）" : "（采纳建议）";
  $("choice-note").className = corrected ? "note corrected" : "note";
  confirmButton.textContent = corrected ? "提交更正" : "采纳建议";
  $("reset-button").disabled = !corrected;
  const over = coOverLimit();
  showCoLimit(
    over
      ? `${coLimitText(state.limits.departments)}，现为 ${over.toLocaleString("zh-CN")} 字，请取消部分会办部门后再保存。`
      : "",
  );
  const long = choiceNameOverLimit();
  setStatus($("choice-limit"), long ? `${nameLimitText(...long)}后再保存。` : "", "error");
  $("choice-limit").hidden = !long;
  const saved = state.savedKey === choiceKey();
  if (saved) confirmButton.textContent = "已保存";
  confirmButton.disabled = saved || !s || state.saving === s || over > 0 || long !== null;
}

async function confirmChoice() {
  const s = state.suggestion;
  if (!s || confirmButton.disabled || state.saving === s || coOverLimit() || choiceNameOverLimit()) {
    return;
  }
  // Read when saving, as the dispatcher id is: the ticket id may be typed after routing (it does not
  // change the suggestion). Another id than the routed one is another ticket, and so is a text or
  // title changed since (another ticket pasted in would have stored the routed one again, under the
  // suggestion made for it): those are routed again first. A form the save emptied and nothing typed
  // into since is still the saved ticket.
  const afterSave = state.cleared && state.cleared.suggestion === s && formEmpty();
  const ticketId = afterSave ? state.cleared.id : idInput.value.trim() || null;
  const routedId = afterSave ? ticketId : state.request.id;
  const edited =
    !afterSave &&
    (textInput.value !== state.request.text || titleInput.value.trim() !== state.request.title);
  if (edited || (idKey(ticketId) !== idKey(routedId) && routedId !== null)) {
    setStatus(
      $("feedback-status"),
      edited
        ? "诉求内容或标题在分派后已改动，请重新分派后再保存。"
        : `工单编号与分派时（${routedId}）不同，请重新分派后再保存。`,
      "error",
    );
    return;
  }
  const key = choiceKey();
  const dispatcher = dispatcherInput.value.trim();
  // The suggestion as shown, without the ticket's text again (`masked`): the body has it.
  const { masked: read, ...shown } = s;
  const body = {
    ticket_id: ticketId,
    title: state.request.title || null,
    text: state.request.text,
    suggestion: shown,
    department: chosenDepartment(),
    category: state.choice.category,
    dispatcher_id: dispatcher || null,
  };
  const { ticket, id: requestId } = requestIdOf(body);
  body.request_id = requestId;
  const corrected = isCorrection();
  // What is sent, for the message: the choice may change while the save runs.
  const department = state.choice.department;
  const co = chosenCo();
  const category = state.choice.category;
  const chosen = [
    department && (co.length ? `${department}（会办：${co.join("、")}）` : department),
    category,
  ].filter(Boolean).join(" / ");
  const request = state.request;
  // Another decision is sent: the one saved before is no longer known to be the ticket's latest
  // (this one may be stored even if its answer is lost), so going back to it saves it again.
  state.savedKey = null;
  state.saving = s;
  state.failed = null; // this save reports its own outcome
  const focused = document.activeElement === confirmButton;
  confirmButton.disabled = true; // the focus falls to the page: given back below
  setStatus($("feedback-status"), "正在保存…", "busy");
  try {
    const saved = await api("POST", "v1/feedback", body);
    if (!Number.isInteger(saved.id)) throw new Error(unrecognised()); // not stored, or not said so
    const pending = state.requestIds.get(ticket);
    if (pending && pending.id === requestId) state.requestIds.delete(ticket);
    if (state.suggestion !== s) return; // routed something else meanwhile
    state.savedKey = key;
    const ref = `${ticketId ? `，工单 ${ticketId}` : ""}，记录编号 ${saved.id}`;
    // The next ticket goes into an empty form: pasted behind the saved one's text, it was routed and
    // stored as both texts, under the saved one's id. Not when the form changed while saving (the
    // dispatcher has begun the next ticket) - nor is anything typed since lost.
    const emptied = formHolds(ticketId, request);
    if (emptied) {
      clearForm();
      state.cleared = { suggestion: s, id: ticketId };
    }
    setStatus(
      $("feedback-status"),
      `✓ 已保存：${corrected ? "更正为" : "采纳建议"} ${chosen}${ref}` +
        (emptied ? "；表单已清空，请输入下一张工单" : ""),
      "ok",
    );
  } catch (e) {
    // A save that may be stored is never said to have failed (docs/api.md): the dispatcher, told 保存失败,
    // would decide again or route it again for nothing.
    const said = e.outcomeUnknown ? unconfirmed(e) : `保存失败：${e.message}`;
    if (state.suggestion === s) {
      setStatus($("feedback-status"), said, "error");
      const reason = e.reason || e.message;
      state.failed = { suggestion: s, ticketId, read, chosen, reason, outcomeUnknown: e.outcomeUnknown };
    } else reportUnsaved(ticketId, read, chosen, e.reason || e.message, e.outcomeUnknown);
  } finally {
    if (state.saving === s) state.saving = null;
    if (state.suggestion) renderChoice();
    // The focus the disabled button dropped: back on it when it can be pressed again (the save
    // failed, "可以放心重新保存", or another choice was made meanwhile), so that Enter saves; once
    // saved, in the emptied 诉求描述 for the next ticket. Left alone when the dispatcher has moved it.
    if (focused && focusLost() && state.suggestion === s) {
      (confirmButton.disabled ? textInput : confirmButton).focus();
    }
  }
}

// A save that failed after the dispatcher moved on (清空, or the next ticket routed): the advice and
// its status line are gone, and a message there would read as the next ticket's. Said under the
// form instead (outside the advice), naming the ticket, until dismissed: by the start of its text as
// typed, personal data masked (`read`, the answer's `masked`), never unmasked.
function reportUnsaved(ticketId, read, chosen, reason, outcomeUnknown) {
  const quoted = quoteStart(String((read && read.text) || "").trim(), 20);
  const start = quoted ? `「${quoted}」` : "";
  const ticket = ticketId ? `工单 ${ticketId}${start}` : `工单${start}`;
  $("unsaved-list").append(
    el(
      "li",
      {},
      outcomeUnknown
        ? `${ticket}的派单（${chosen}）未能确认保存：${reason}。请重新分派该工单后再保存（同一派单不会重复记录）。`
        : `${ticket}的派单（${chosen}）没有保存：${reason}。请重新分派该工单后再保存。`,
    ),
  );
  $("unsaved").hidden = false;
}

// -- searchable lists ------------------------------------------------------------------------------

function pickerOf(head) {
  const card = $(`head-${head}`);
  return { input: card.querySelector(".picker-input"), list: card.querySelector(".picker-list") };
}

function resetPicker(head) {
  const { input, list } = pickerOf(head);
  input.value = "";
  list.hidden = true;
  input.setAttribute("aria-expanded", "false");
}

function pickerOptions(head) {
  // All labels the model knows; fall back to the candidates if /v1/model was unavailable.
  const known = state.labels[head].length
    ? state.labels[head]
    : ((state.suggestion && state.suggestion[head] && state.suggestion[head].candidates) || []).map(
        (c) => c.label,
      );
  return known;
}

function fillPicker(head) {
  const { input, list } = pickerOf(head);
  const q = input.value.trim().normalize("NFKC").toLowerCase();
  const matches = pickerOptions(head).filter(
    (l) => !q || l.normalize("NFKC").toLowerCase().includes(q),
  );
  const shown = matches.slice(0, PICKER_LIMIT).map((label) => {
    const option = el(
      "button",
      { type: "button", class: "option", role: "option", tabindex: "-1", dataset: { label } },
      label,
    );
    option.addEventListener("click", () => {
      choose(head, label);
      resetPicker(head);
    });
    return el("li", {}, option);
  });
  if (!shown.length) shown.push(el("li", { class: "muted empty" }, "没有匹配项"));
  else if (matches.length > PICKER_LIMIT)
    shown.push(el("li", { class: "muted empty" }, `还有 ${matches.length - PICKER_LIMIT} 项，请输入以缩小范围`));
  setChildren(list, ...shown);
  list.hidden = false;
  input.setAttribute("aria-expanded", "true");
}

function wirePicker(head) {
  const { input, list } = pickerOf(head);
  const picker = input.parentElement;
  input.addEventListener("input", () => fillPicker(head));
  input.addEventListener("focus", () => fillPicker(head));
  input.addEventListener("keydown", (e) => {
    // A key the Chinese IME is composing with is the IME's: its Enter confirms a candidate and its
    // arrows step through them (Chrome and Edge on macOS report them as "Enter" and "ArrowDown"),
    // which took the first match as the department, the next Enter storing it.
    if (isComposing(e)) return;
    const options = [...list.querySelectorAll(".option")];
    if (e.key === "Enter") {
      e.preventDefault();
      // The first match only once something is typed: the box opens on every label, and Enter in it
      // empty (a Tab past the candidates, then Enter as the footer says) replaced the advice with the
      // first department of the whole list, which a second Enter stored as the correction.
      if (input.value.trim() && options.length) options[0].click();
      else resetPicker(head);
    } else if (e.key === "ArrowDown" && options.length) {
      e.preventDefault();
      options[0].focus();
    } else if (e.key === "Escape") {
      resetPicker(head);
    }
  });
  list.addEventListener("keydown", (e) => {
    const options = [...list.querySelectorAll(".option")];
    const at = options.indexOf(document.activeElement);
    if (e.key === "ArrowDown" && at < options.length - 1) options[at + 1].focus();
    else if (e.key === "ArrowUp") (at > 0 ? options[at - 1] : input).focus();
    else if (e.key === "Escape") {
      resetPicker(head);
      input.focus();
    } else return;
    e.preventDefault();
  });
  picker.addEventListener("focusout", (e) => {
    if (!picker.contains(e.relatedTarget)) {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
    }
  });
}

// -- wiring ----------------------------------------------------------------------------------------

form.addEventListener("submit", (e) => {
  e.preventDefault();
  route();
});
confirmButton.addEventListener("click", confirmChoice);
$("reset-button").addEventListener("click", () => {
  if (!state.suggestion) return;
  for (const head of HEADS) state.choice[head] = state.suggestion[head] ? state.suggestion[head].label : null;
  state.co = advisedCo(state.suggestion);
  state.coShown = advisedCo(state.suggestion);
  renderCoDepartments();
  renderChoice();
  announceChoice();
  confirmButton.focus();
});
// 「＋ 加入会办部门…」 adds on an explicit choice only: a click in its list, or Enter. Chrome and Edge
// change a closed <select> on every arrow key (and type-ahead) and fire "change" each time, so a
// change after such a key is the dispatcher looking through the list: Enter adds what it shows.
const coAdd = $("co-add");
let coBrowsing = false;
function addChosenCo() {
  coBrowsing = false;
  addCo(coAdd.value);
  coAdd.value = "";
}
coAdd.addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    addChosenCo();
  } else if (e.key === " " || e.key === "F4" || e.altKey) {
    coBrowsing = false; // opens the list: a choice in it is explicit
  } else if (!["Shift", "Control", "Meta", "Tab", "Escape"].includes(e.key)) {
    coBrowsing = true;
  }
});
coAdd.addEventListener("pointerdown", () => {
  coBrowsing = false;
});
coAdd.addEventListener("change", () => {
  if (!coBrowsing) addChosenCo();
});
coAdd.addEventListener("blur", () => {
  if (coBrowsing) coAdd.value = ""; // looked through, not chosen
  coBrowsing = false;
});
// Whether the form holds the ticket ``id`` with the title and text ``request`` routed.
function formHolds(id, request) {
  return (
    (idInput.value.trim() || null) === id &&
    titleInput.value.trim() === request.title &&
    textInput.value === request.text
  );
}
function formEmpty() {
  return !idInput.value.trim() && !titleInput.value.trim() && !textInput.value;
}

// Empties 工单编号, 标题 and 诉求描述 (the advice shown stays).
function clearForm() {
  idInput.value = "";
  titleInput.value = "";
  textInput.value = "";
  setStatus($("route-status"), "");
  checkLimits();
}

$("clear-button").addEventListener("click", () => {
  dropResult();
  cancelRoute(); // the route still running is for the ticket cleared
  routeButton.disabled = false;
  clearForm();
  textInput.focus();
});
$("unsaved-dismiss").addEventListener("click", () => {
  $("unsaved").hidden = true;
  setChildren($("unsaved-list"));
});
// Enter in 工单编号 or 标题 goes to the next field, as in the hotline system's own forms; routing is
// Ctrl+Enter. It submitted the form: Enter after the 工单编号 typed while reading the advice routed
// the ticket again, the choice corrected went back to the advice and the next Enter stored that.
for (const [input, next] of [[idInput, titleInput], [titleInput, textInput]]) {
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || isComposing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    next.focus();
  });
}
textInput.addEventListener("keydown", (e) => {
  if (!holdKey(e, true)) releaseHeld(e);
});
textInput.addEventListener("beforeinput", releaseHeld);
textInput.addEventListener("input", checkLimits);
titleInput.addEventListener("input", checkLimits);
HEADS.forEach(wirePicker);

document.addEventListener("keydown", (e) => {
  // Not while an input method composes: the text would go with its unconfirmed letters (bu'chong).
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !isComposing(e)) {
    e.preventDefault();
    route();
    return;
  }
  if (!state.suggestion && !isEditable(e.target) && holdKey(e, false)) return;
  if (!state.suggestion || e.ctrlKey || e.metaKey || e.altKey || isEditable(e.target)) return;
  if (isComposing(e)) return; // the input method's key (its candidate 2), not the page's
  const m = /^(?:Digit|Numpad)([1-5])$/.exec(e.code);
  if (!m) return;
  const head = e.shiftKey ? "category" : "department";
  const r = state.suggestion[head];
  const c = r && r.candidates && r.candidates[Number(m[1]) - 1];
  if (c) {
    e.preventDefault();
    choose(head, c.label);
  }
});

// Where site data is blocked (a browser setting or policy) even reading localStorage throws: the page
// must start all the same, it just does not remember the dispatcher id and the key.
function stored(area, key) {
  try {
    return window[area].getItem(key) || "";
  } catch (e) {
    return "";
  }
}
function store(area, key, value) {
  try {
    window[area].setItem(key, value);
  } catch (e) {
    // not remembered; everything else works
  }
}

dispatcherInput.value = stored("localStorage", DISPATCHER_KEY);
dispatcherInput.addEventListener("change", () => {
  store("localStorage", DISPATCHER_KEY, dispatcherInput.value.trim());
});

apiKeyInput.value = stored("sessionStorage", API_KEY_STORE);
apiKeyInput.addEventListener("change", () => {
  store("sessionStorage", API_KEY_STORE, apiKeyInput.value.trim());
});

loadModel();
// Shown again from the back/forward cache (the tab's 后退, a restored tab): the header and the lists
// are as they were when the page was left; the server may have gone, or changed models, since.
window.addEventListener("pageshow", (e) => {
  if (e.persisted) loadModel();
});
// The network is back: no need to wait for the next try.
window.addEventListener("online", () => {
  if (modelLoad.tries) loadModel();
});
textInput.focus();
// The page works: index.html disables 分派建议 until now, so that a browser which does not run this
// script cannot submit the form (reloading the page and losing the complaint typed).
routeButton.disabled = false;
$("script-notice").hidden = true;
window.paidanStarted = true; // check.js looks at this when the page has loaded
