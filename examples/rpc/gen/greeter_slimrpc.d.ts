import { type ChannelLike, type ServerLike, type ContextLike, type RpcMessageContext } from "slim-node";
import { type CountReply, type CountRequest, type HelloReply, type HelloRequest } from "./greeter_pb.js";
export declare class GreeterClient {
    private readonly _channel;
    constructor(_channel: ChannelLike);
    SayHello(request: HelloRequest, timeout?: number, metadata?: Map<string, string>): Promise<HelloReply>;
    CountDown(request: CountRequest, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<CountReply>;
    Collect(requests: AsyncIterable<HelloRequest>, timeout?: number, metadata?: Map<string, string>): Promise<HelloReply>;
    Chat(requests: AsyncIterable<HelloRequest>, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<HelloReply>;
}
export declare class GreeterGroupClient {
    private readonly _channel;
    constructor(_channel: ChannelLike);
    SayHello(request: HelloRequest, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<{
        context: RpcMessageContext;
        response: HelloReply;
    }>;
    CountDown(request: CountRequest, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<{
        context: RpcMessageContext;
        response: CountReply;
    }>;
    Collect(requests: AsyncIterable<HelloRequest>, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<{
        context: RpcMessageContext;
        response: HelloReply;
    }>;
    Chat(requests: AsyncIterable<HelloRequest>, timeout?: number, metadata?: Map<string, string>): AsyncGenerator<{
        context: RpcMessageContext;
        response: HelloReply;
    }>;
}
export interface GreeterServicer {
    SayHello(request: HelloRequest, context: ContextLike): Promise<HelloReply>;
    CountDown(request: CountRequest, context: ContextLike): AsyncIterable<CountReply>;
    Collect(requests: AsyncIterable<HelloRequest>, context: ContextLike): Promise<HelloReply>;
    Chat(requests: AsyncIterable<HelloRequest>, context: ContextLike): AsyncIterable<HelloReply>;
}
export declare function registerGreeterServicer(server: ServerLike, servicer: GreeterServicer): void;
