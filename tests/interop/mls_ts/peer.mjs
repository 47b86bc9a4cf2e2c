// One ts-mls group member, driven by tests/interop/test_mls_ts_interop.py.
//
// Usage: node peer.mjs [SUITE]. SUITE is an MLS cipher suite id, default 1
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519); the ids of PQ_SUITES below
// select draft-ietf-mls-pq-ciphersuites' post-quantum suites.
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
import { shake256 } from "@noble/hashes/sha3.js";
import {
  acceptAll,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
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

// draft-ietf-mls-pq-ciphersuites-06 §3, suite TBDn on Sealwire's provisional
// private-use code point 0xF0A0 + n (the draft's values are not assigned yet).
// ts-mls 1.6.4 has no such suites of its own (its PQ suites use other KDFs and
// code points), so they are assembled here from ts-mls's parts: its HPKE (hpke-js
// @hpke/ml-kem, @hpke/hybridkem-x-wing), hashes, KDFs and signatures.
const PQ_SUITES = {
  0xf0a1: ["SHA-256", "X-Wing", "HKDF-SHA256", "AES128GCM", "Ed25519"],
  0xf0a2: ["SHA-384", "X-Wing", "HKDF-SHA384", "AES256GCM", "Ed25519"],
  0xf0a6: ["SHA-384", "ML-KEM-768", "HKDF-SHA384", "AES256GCM", "Ed25519"],
  0xf0a7: ["SHA-384", "ML-KEM-768", "HKDF-SHA384", "AES256GCM", "P256"],
  0xf0a8: ["SHA-384", "ML-KEM-1024", "HKDF-SHA384", "AES256GCM", "P384"],
  0xf0a9: ["SHA-384", "X-Wing", "HKDF-SHA384", "CHACHA20POLY1305", "ML-DSA-44"],
  0xf0aa: ["SHA-384", "ML-KEM-768", "HKDF-SHA384", "AES256GCM", "ML-DSA-65"],
  0xf0ab: ["SHA-384", "ML-KEM-1024", "HKDF-SHA384", "AES256GCM", "ML-DSA-87"],
};
// HPKE KEM ids (draft-ietf-hpke-pq) and DeriveKeyPair output lengths (Nsk).
const KEMS = { "X-Wing": [0x647a, 32], "ML-KEM-768": [0x0041, 64], "ML-KEM-1024": [0x0042, 64] };

const u16 = (n) => new Uint8Array([n >> 8, n & 0xff]);
const cat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));

// SHAKE256.LabeledDerive (draft-ietf-hpke-hpke §4) with the KEM's suite_id.
function labeledDerive(kemId, ikm, label, length) {
  const suiteId = cat(Buffer.from("KEM"), u16(kemId));
  const text = Buffer.from(label);
  const labeled = cat(ikm, Buffer.from("HPKE-v1"), suiteId, u16(text.length), text, u16(length));
  return shake256(labeled, { dkLen: length });
}

// DeriveKeyPair as draft-ietf-hpke-pq §3-4 defines it. hpke-js 0.7 / 0.3 derive
// otherwise (X-Wing: SHAKE256(ikm, 32), an older X-Wing draft; ML-KEM: the ikm
// itself as the seed), so it is done here, with @noble/post-quantum's key
// generation; encapsulation and decapsulation stay hpke-js's.
async function pqDeriveKeyPair(hpke, kem) {
  const [kemId, nsk] = KEMS[kem];
  const keygen =
    kem === "X-Wing"
      ? (await import("@noble/post-quantum/hybrid.js")).XWing.keygen
      : (await import("@noble/post-quantum/ml-kem.js"))[kem === "ML-KEM-768" ? "ml_kem768" : "ml_kem1024"].keygen;
  return async (ikm) => {
    const sk = labeledDerive(kemId, ikm, "DeriveKeyPair", nsk);
    const { publicKey } = keygen(sk);
    return { privateKey: await hpke.importPrivateKey(sk), publicKey: await hpke.importPublicKey(publicKey) };
  };
}

// ML-DSA-44 and -65 (ts-mls 1.6.4 has only -87): @noble/post-quantum, pure ML-DSA
// with the empty context, as draft-ietf-tls-mldsa's signature schemes are.
async function mldsa(name) {
  const module = await import("@noble/post-quantum/ml-dsa.js");
  const scheme = module[name === "ML-DSA-44" ? "ml_dsa44" : "ml_dsa65"];
  return {
    async sign(signKey, message) {
      return scheme.sign(message, signKey);
    },
    async verify(publicKey, message, signature) {
      return scheme.verify(signature, message, publicKey);
    },
    async keygen() {
      const keys = scheme.keygen(crypto.getRandomValues(new Uint8Array(32)));
      return { signKey: keys.secretKey, publicKey: keys.publicKey };
    },
  };
}

async function suiteImpl(id) {
  const pq = PQ_SUITES[id];
  if (pq === undefined) {
    const name = Object.keys(ciphersuites).find((key) => ciphersuites[key] === id);
    if (name === undefined) throw new Error(`unknown cipher suite ${id}`);
    return [await getCiphersuiteImpl(getCiphersuiteFromName(name)), name];
  }
  const [hash, kem, kdf, aead, signature] = pq;
  const builtIn = signature === "ML-DSA-44" || signature === "ML-DSA-65" ? "Ed25519" : signature;
  const name = String(id); // ts-mls's open enum: an unknown suite is its decimal id
  const impl = await getCiphersuiteImpl({ hash, hpke: { kem, kdf, aead }, signature: builtIn, name });
  if (builtIn !== signature) impl.signature = await mldsa(signature);
  impl.hpke = { ...impl.hpke, deriveKeyPair: await pqDeriveKeyPair(impl.hpke, kem) };
  return [impl, name];
}

const [impl, SUITE] = await suiteImpl(Number(process.argv[2] ?? 1));

function capabilities() {
  const caps = defaultCapabilities();
  if (!caps.ciphersuites.includes(SUITE)) caps.ciphersuites = [...caps.ciphersuites, SUITE];
  return caps;
}
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
    // no lifetime given: the one ts-mls makes by default (0 .. 2**63 - 1, "unbounded")
    const lifetime =
      not_before === undefined
        ? defaultLifetime
        : { notBefore: BigInt(not_before), notAfter: BigInt(not_after) };
    keyPackage = await generateKeyPackage(credential, capabilities(), lifetime, [], impl);
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
