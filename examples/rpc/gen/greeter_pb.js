// The example service of examples/rpc: one unary and one server-streaming method, plus a
// client-streaming and a bidirectional one that the generated-code test exercises.
import { fileDesc, messageDesc, serviceDesc } from "@bufbuild/protobuf/codegenv2";
/**
 * Describes the file greeter.proto.
 */
export const file_greeter = /*@__PURE__*/ fileDesc("Cg1ncmVldGVyLnByb3RvEhJleGFtcGxlLmdyZWV0ZXIudjEiHAoMSGVsbG9SZXF1ZXN0EgwKBG5hbWUYASABKAkiLQoKSGVsbG9SZXBseRIPCgdtZXNzYWdlGAEgASgJEg4KBmNhbGxlchgCIAEoCSIcCgxDb3VudFJlcXVlc3QSDAoEZnJvbRgBIAEoDSIbCgpDb3VudFJlcGx5Eg0KBXZhbHVlGAEgASgNMsUCCgdHcmVldGVyEkwKCFNheUhlbGxvEiAuZXhhbXBsZS5ncmVldGVyLnYxLkhlbGxvUmVxdWVzdBoeLmV4YW1wbGUuZ3JlZXRlci52MS5IZWxsb1JlcGx5Ek8KCUNvdW50RG93bhIgLmV4YW1wbGUuZ3JlZXRlci52MS5Db3VudFJlcXVlc3QaHi5leGFtcGxlLmdyZWV0ZXIudjEuQ291bnRSZXBseTABEk0KB0NvbGxlY3QSIC5leGFtcGxlLmdyZWV0ZXIudjEuSGVsbG9SZXF1ZXN0Gh4uZXhhbXBsZS5ncmVldGVyLnYxLkhlbGxvUmVwbHkoARJMCgRDaGF0EiAuZXhhbXBsZS5ncmVldGVyLnYxLkhlbGxvUmVxdWVzdBoeLmV4YW1wbGUuZ3JlZXRlci52MS5IZWxsb1JlcGx5KAEwAWIGcHJvdG8z");
/**
 * Describes the message example.greeter.v1.HelloRequest.
 * Use `create(HelloRequestSchema)` to create a new message.
 */
export const HelloRequestSchema = /*@__PURE__*/ messageDesc(file_greeter, 0);
/**
 * Describes the message example.greeter.v1.HelloReply.
 * Use `create(HelloReplySchema)` to create a new message.
 */
export const HelloReplySchema = /*@__PURE__*/ messageDesc(file_greeter, 1);
/**
 * Describes the message example.greeter.v1.CountRequest.
 * Use `create(CountRequestSchema)` to create a new message.
 */
export const CountRequestSchema = /*@__PURE__*/ messageDesc(file_greeter, 2);
/**
 * Describes the message example.greeter.v1.CountReply.
 * Use `create(CountReplySchema)` to create a new message.
 */
export const CountReplySchema = /*@__PURE__*/ messageDesc(file_greeter, 3);
/**
 * @generated from service example.greeter.v1.Greeter
 */
export const Greeter = /*@__PURE__*/ serviceDesc(file_greeter, 0);
