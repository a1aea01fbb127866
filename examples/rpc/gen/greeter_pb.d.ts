import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file greeter.proto.
 */
export declare const file_greeter: GenFile;
/**
 * @generated from message example.greeter.v1.HelloRequest
 */
export type HelloRequest = Message<"example.greeter.v1.HelloRequest"> & {
    /**
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message example.greeter.v1.HelloRequest.
 * Use `create(HelloRequestSchema)` to create a new message.
 */
export declare const HelloRequestSchema: GenMessage<HelloRequest>;
/**
 * @generated from message example.greeter.v1.HelloReply
 */
export type HelloReply = Message<"example.greeter.v1.HelloReply"> & {
    /**
     * @generated from field: string message = 1;
     */
    message: string;
    /**
     * The caller as the server verified it (its MLS identity).
     *
     * @generated from field: string caller = 2;
     */
    caller: string;
};
/**
 * Describes the message example.greeter.v1.HelloReply.
 * Use `create(HelloReplySchema)` to create a new message.
 */
export declare const HelloReplySchema: GenMessage<HelloReply>;
/**
 * @generated from message example.greeter.v1.CountRequest
 */
export type CountRequest = Message<"example.greeter.v1.CountRequest"> & {
    /**
     * @generated from field: uint32 from = 1;
     */
    from: number;
};
/**
 * Describes the message example.greeter.v1.CountRequest.
 * Use `create(CountRequestSchema)` to create a new message.
 */
export declare const CountRequestSchema: GenMessage<CountRequest>;
/**
 * @generated from message example.greeter.v1.CountReply
 */
export type CountReply = Message<"example.greeter.v1.CountReply"> & {
    /**
     * @generated from field: uint32 value = 1;
     */
    value: number;
};
/**
 * Describes the message example.greeter.v1.CountReply.
 * Use `create(CountReplySchema)` to create a new message.
 */
export declare const CountReplySchema: GenMessage<CountReply>;
/**
 * @generated from service example.greeter.v1.Greeter
 */
export declare const Greeter: GenService<{
    /**
     * @generated from rpc example.greeter.v1.Greeter.SayHello
     */
    sayHello: {
        methodKind: "unary";
        input: typeof HelloRequestSchema;
        output: typeof HelloReplySchema;
    };
    /**
     * @generated from rpc example.greeter.v1.Greeter.CountDown
     */
    countDown: {
        methodKind: "server_streaming";
        input: typeof CountRequestSchema;
        output: typeof CountReplySchema;
    };
    /**
     * @generated from rpc example.greeter.v1.Greeter.Collect
     */
    collect: {
        methodKind: "client_streaming";
        input: typeof HelloRequestSchema;
        output: typeof HelloReplySchema;
    };
    /**
     * @generated from rpc example.greeter.v1.Greeter.Chat
     */
    chat: {
        methodKind: "bidi_streaming";
        input: typeof HelloRequestSchema;
        output: typeof HelloReplySchema;
    };
}>;
