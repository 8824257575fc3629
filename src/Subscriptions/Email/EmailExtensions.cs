using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using Subscriptions.Configuration;

namespace Subscriptions.Email;

internal static class EmailExtensions
{
    /// <summary>The mail sender (SMTP when <c>Smtp:Host</c> is set, the pickup folder otherwise) and its resilience pipeline.</summary>
    public static IServiceCollection AddMailSending(this IServiceCollection services)
    {
        services.AddSection<SmtpOptions>(SmtpOptions.Section);
        services.AddSection<MailOptions>(MailOptions.Section);
        services.TryAddSingleton(TimeProvider.System);

        services.AddResiliencePipeline(SmtpMailSender.PipelineName, (builder, context) =>
        {
            var smtp = context.ServiceProvider.GetRequiredService<IOptions<SmtpOptions>>().Value;
            if (smtp.Retries > 0)
            {
                builder.AddRetry(new RetryStrategyOptions
                {
                    ShouldHandle = new PredicateBuilder()
                        .Handle<SmtpCommandException>(e => (int)e.StatusCode is >= 400 and < 500)
                        .Handle<SmtpProtocolException>()
                        .Handle<ServiceNotConnectedException>()
                        .Handle<IOException>()
                        .Handle<SocketException>()
                        .Handle<TimeoutRejectedException>(),
                    MaxRetryAttempts = smtp.Retries,
                    Delay = smtp.RetryDelay,
                    BackoffType = DelayBackoffType.Exponential,
                    UseJitter = true,
                });
            }
            // Each attempt (connect if needed, then send one message) gets its own deadline.
            builder.AddTimeout(smtp.Timeout);
        });

        services.AddSingleton<SmtpMailSender>();
        services.AddSingleton<PickupDirectoryMailSender>();
        services.AddSingleton<IMailSender, ConfiguredMailSender>();
        return services;
    }

    /// <summary>The queue of confirmation and notice emails and the background worker that sends it.</summary>
    public static IServiceCollection AddEmailOutbox(this IServiceCollection services)
    {
        services.AddSingleton<TransactionalEmails>();
        services.AddSingleton<EmailOutbox>();
        services.AddSingleton<OutboxSignal>();
        services.AddHostedService<EmailOutboxWorker>();
        return services;
    }
}
