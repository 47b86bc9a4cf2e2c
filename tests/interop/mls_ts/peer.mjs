// One ts-mls group member, driven by tests/interop/test_mls_ts_interop.py.
//
// Protocol: one JSON object per line on stdin, one JSON answer per line on
// stdout. Bytes travel as lowercase hex; MLS messages are whole MLSMessage
// encodings (RFC 9420 §6). Every answer has "ok"; a failure gives
// {"ok": false, "error": "<class>: <message>"} and leaves the member as it was
// (ts-mls states are immutable values: we keep the old one on error).
//
// Commands (fields besides "cmd")                   -> answer fields
//   key_package          identity, not_before, not_after -> key_package
//   create               group_id                      -> epoch, leaf, active
//   add                  key_packages, public?         -> commit, welcome, epoch
//   join                 welcome                       -> epoch, leaf, active
//   encrypt              data                          -> message
//   process              message                       -> kind, data?, epoch, active
//   commit_update        public?                       -> commit, epoch
//   remove               leaves, public?               -> commit, epoch
//   export_secret        label, context, length        -> secret
//   epoch_authenticator                                -> value, epoch
//   state                                              -> members, epoch, leaf, active

import { createInterface } from "node:readline";
import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  makePskIndex,
  mlsExporter,
  processMessage,
} from "ts-mls";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"; // RFC 9420 suite 1

const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
let keyPackage; // { publicPackage, privatePackage } of our last key_package
let state; // the ts-mls ClientState of our one group

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (text) => new Uint8Array(Buffer.from(text, "hex"));

function decode(text, wireformat) {
  const decoded = decodeMlsMessage(unhex(text), 0);
  if (decoded === undefined) throw new Error("not an MLSMessage");
  const [message, length] = decoded;
  if (length !== text.length / 2) throw new Error("trailing bytes after the MLSMessage");
  if (wireformat !== undefined && message.wireformat !== wireformat) {
    throw new Error(`expected ${wireformat}, got ${message.wireformat}`);
  }
  return message;
}

const encode = (content) => hex(encodeMlsMessage({ version: "mls10", ...content }));

function needState() {
  if (state === undefined) throw new Error("no group yet");
  return state;
}

function summary(s) {
  return {
    epoch: Number(s.groupContext.epoch),
    leaf: s.privatePath.leafIndex,
    active: s.groupActiveState.kind === "active",
  };
}

async function commit(options) {
  const result = await createCommit(
    { state: needState(), cipherSuite: impl, pskIndex: emptyPskIndex },
    { ratchetTreeExtension: true, ...options },
  );
  state = result.newState;
  const answer = { commit: hex(encodeMlsMessage(result.commit)), ...summary(state) };
  if (result.welcome !== undefined) {
    answer.welcome = encode({ wireformat: "mls_welcome", welcome: result.welcome });
  }
  return answer;
}

const commands = {
  async key_package({ identity, not_before, not_after }) {
    const credential = { credentialType: "basic", identity: unhex(identity) };
    const lifetime = { notBefore: BigInt(not_before), notAfter: BigInt(not_after) };
    keyPackage = await generateKeyPackage(credential, defaultCapabilities(), lifetime, [], impl);
    const message = { wireformat: "mls_key_package", keyPackage: keyPackage.publicPackage };
    return { key_package: encode(message) };
  },

  async create({ group_id }) {
    if (keyPackage === undefined) throw new Error("make a key_package first");
    const { publicPackage, privatePackage } = keyPackage;
    state = await createGroup(unhex(group_id), publicPackage, privatePackage, [], impl);
    return summary(state);
  },

  async add({ key_packages, public: asPublic = false }) {
    const adds = key_packages.map((text) => ({
      proposalType: "add",
      add: { keyPackage: decode(text, "mls_key_package").keyPackage },
    }));
    return commit({ extraProposals: adds, wireAsPublicMessage: asPublic });
  },

  async join({ welcome }) {
    if (keyPackage === undefined) throw new Error("make a key_package first");
    const body = decode(welcome, "mls_welcome").welcome;
    const { publicPackage, privatePackage } = keyPackage;
    // No tree passed: ts-mls must read the Welcome's ratchet_tree extension.
    state = await joinGroup(body, publicPackage, privatePackage, emptyPskIndex, impl);
    return summary(state);
  },

  async encrypt({ data }) {
    const result = await createApplicationMessage(needState(), unhex(data), impl);
    state = result.newState;
    const privateMessage = result.privateMessage;
    return { message: encode({ wireformat: "mls_private_message", privateMessage }) };
  },

  async process({ message }) {
    const decoded = decode(message);
    const current = needState();
    const psks = makePskIndex(current, {});
    const result = await processMessage(decoded, current, psks, acceptAll, impl);
    state = result.newState;
    if (result.kind === "applicationMessage") {
      return { kind: "application", data: hex(result.message), ...summary(state) };
    }
    const moved = state.groupContext.epoch !== current.groupContext.epoch;
    return { kind: moved || !summary(state).active ? "commit" : "proposal", ...summary(state) };
  },

  async commit_update({ public: asPublic = false }) {
    return commit({ wireAsPublicMessage: asPublic }); // no proposals: a path-only commit
  },

  async remove({ leaves, public: asPublic = false }) {
    const removes = leaves.map((leaf) => ({ proposalType: "remove", remove: { removed: leaf } }));
    return commit({ extraProposals: removes, wireAsPublicMessage: asPublic });
  },

  async export_secret({ label, context, length }) {
    const s = needState();
    const exporter = s.keySchedule.exporterSecret;
    const secret = await mlsExporter(exporter, label, unhex(context), length, impl);
    return { secret: hex(secret) };
  },

  async epoch_authenticator() {
    const s = needState();
    return { value: hex(s.keySchedule.epochAuthenticator), epoch: Number(s.groupContext.epoch) };
  },

  async state() {
    const s = needState();
    const members = s.ratchetTree.flatMap((node, index) =>
      node !== undefined && node.nodeType === "leaf" ? [index / 2] : [],
    );
    return { members, ...summary(s) };
  },
};

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return { ok: false, error: "SyntaxError: not JSON" };
  }
  const command = commands[request.cmd];
  if (command === undefined) return { ok: false, error: `UsageError: unknown cmd ${request.cmd}` };
  try {
    return { ok: true, ...(await command(request)) };
  } catch (error) {
    const kind = error?.constructor?.name ?? "Error";
    return { ok: false, error: `${kind}: ${error?.message ?? error}` };
  }
}

// Lines are handled one at a time, in order: each command sees the state the
// previous one left.
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  process.stdout.write(JSON.stringify(await handle(line)) + "\n");
}
